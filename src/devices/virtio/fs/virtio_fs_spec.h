// virtio file system device (virtio 1.2, 5.11): constants and the
// configuration layout. The requests themselves are FUSE (src/fs/).
#pragma once

#include <cstdint>

namespace hostvisor::virtio_fs {

inline constexpr uint32_t kDeviceFs = 26;
// Queue 0 is the high-priority queue (FORGET, BATCH_FORGET), then the request queues.
inline constexpr uint16_t kHiprioQueue = 0;
inline constexpr uint16_t kRequestQueue = 1;
inline constexpr uint32_t kRequestQueues = 1;
inline constexpr size_t kTagBytes = 36;

struct Config {
  char tag[kTagBytes];  // UTF-8, NUL-padded; not NUL-terminated when 36 bytes long
  uint32_t num_request_queues;
} __attribute__((packed));
static_assert(sizeof(Config) == 40);

}  // namespace hostvisor::virtio_fs
