// Numbers and layouts of the virtio console device from the virtio 1.2
// specification (OASIS), section 5.3.
#pragma once

#include <cstdint>

namespace hostvisor::virtio_console {

// 5.3.3 feature bits.
inline constexpr unsigned kFeatureSize = 0;
inline constexpr unsigned kFeatureMultiport = 1;
inline constexpr unsigned kFeatureEmergencyWrite = 2;
// 5.3.4 struct virtio_console_config.
struct __attribute__((packed)) Config {
  uint16_t cols;
  uint16_t rows;
  uint32_t max_nr_ports;
  uint32_t emerg_wr;
};
static_assert(sizeof(Config) == 12);
inline constexpr uint16_t kReceiveQueue = 0;
inline constexpr uint16_t kTransmitQueue = 1;

}  // namespace hostvisor::virtio_console
