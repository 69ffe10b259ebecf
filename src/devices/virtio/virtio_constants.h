// Numbers from the virtio 1.2 specification (OASIS): device status bits,
// feature bits, descriptor and ring flags, device types.
#pragma once

#include <cstdint>

namespace hostvisor::virtio {

// 2.1 Device Status Field
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusDeviceNeedsReset = 64;
inline constexpr uint8_t kStatusFailed = 128;

// 6 Reserved Feature Bits (bit numbers)
inline constexpr unsigned kFeatureIndirectDesc = 28;
inline constexpr unsigned kFeatureEventIdx = 29;
inline constexpr unsigned kFeatureVersion1 = 32;
inline constexpr unsigned kFeatureAccessPlatform = 33;
inline constexpr unsigned kFeatureRingPacked = 34;

constexpr uint64_t feature_bit(unsigned bit) { return uint64_t{1} << bit; }

// 2.7.5 The Virtqueue Descriptor Table
inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
inline constexpr uint64_t kDescriptorSize = 16;

// 2.7.6 / 2.7.8 ring flags
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;

// 2.7 split virtqueue: Queue Size is a power of two up to 32768.
inline constexpr uint16_t kMaxQueueSize = 32768;

// 4.1.4.3 / 4.2.2: the "no MSI-X vector" value.
inline constexpr uint16_t kNoVector = 0xffff;

// 5 Device Types
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceConsole = 3;
inline constexpr uint32_t kDeviceEntropy = 4;
inline constexpr uint32_t kDeviceBalloon = 5;

}  // namespace hostvisor::virtio
