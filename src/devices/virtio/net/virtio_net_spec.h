// Numbers and layouts of the virtio network device from the virtio 1.2
// specification (OASIS), section 5.1.
#pragma once

#include <cstdint>

namespace hostvisor::virtio_net {

// 5.1.3 feature bits.
inline constexpr unsigned kFeatureCsum = 0;
inline constexpr unsigned kFeatureGuestCsum = 1;
inline constexpr unsigned kFeatureMtu = 3;
inline constexpr unsigned kFeatureMac = 5;
inline constexpr unsigned kFeatureGuestTso4 = 7;
inline constexpr unsigned kFeatureGuestTso6 = 8;
inline constexpr unsigned kFeatureGuestEcn = 9;
inline constexpr unsigned kFeatureHostTso4 = 11;
inline constexpr unsigned kFeatureHostTso6 = 12;
inline constexpr unsigned kFeatureHostEcn = 13;
inline constexpr unsigned kFeatureMergeableRxBuffers = 15;
inline constexpr unsigned kFeatureStatus = 16;
inline constexpr unsigned kFeatureControlQueue = 17;
// 5.1.4 configuration layout.
struct __attribute__((packed)) Config {
  uint8_t mac[6];
  uint16_t status;
  uint16_t max_virtqueue_pairs;
  uint16_t mtu;
};
static_assert(sizeof(Config) == 12);
inline constexpr uint16_t kStatusLinkUp = 1;
inline constexpr uint16_t kReceiveQueue = 0;
inline constexpr uint16_t kTransmitQueue = 1;

}  // namespace hostvisor::virtio_net
