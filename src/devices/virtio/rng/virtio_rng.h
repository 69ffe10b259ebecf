// virtio entropy device (virtio 1.2, 5.4): one request queue; every
// device-writable buffer the driver offers comes back filled with bytes from
// the host kernel's CSPRNG (getrandom(2)).
#pragma once

#include <mutex>
#include <optional>

#include "devices/virtio/virtio_device.h"

namespace hostvisor {

class VirtioRng : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Bytes handed out per request at most; a driver asking for more gets a
  // short (but valid) answer, so one notification cannot hog the thread.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  std::string_view name() const override { return "rng"; }
  uint32_t device_type() const override;
  uint64_t device_features() const override;
  uint16_t queue_count() const override { return 1; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueSize; }
  Result<void> activate(const VirtioActivation& activation) override;
  void reset() override;
  Result<void> process_queue(uint16_t queue) override;

 private:
  std::mutex mutex_;
  std::optional<VirtioActivation> active_;
};

}  // namespace hostvisor
