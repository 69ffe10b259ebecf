// Test support: a virtio device for the transport and fast-path tests.
#pragma once

#include <atomic>
#include <string_view>
#include <thread>

#include "devices/virtio/virtio_device.h"

namespace hostvisor::testing {

// A two-queue device that counts notifications and answers each with a
// used-buffer interrupt on the same queue.
class CountingDevice : public VirtioDevice {
 public:
  std::string_view name() const override { return "counting"; }
  uint32_t device_type() const override { return 0x2a; }
  uint64_t device_features() const override { return 0; }
  uint16_t queue_count() const override { return 2; }
  uint16_t queue_max_size(uint16_t) const override { return 16; }
  Result<void> activate(const VirtioActivation& activation) override {
    interrupt = activation.interrupt;
    return ok();
  }
  void reset() override { interrupt = nullptr; }
  Result<void> process_queue(uint16_t queue) override {
    ++notified[queue];
    notify_thread = std::this_thread::get_id();
    interrupt->signal_used(queue);
    return ok();
  }
  std::atomic<int> notified[2] = {0, 0};
  std::atomic<std::thread::id> notify_thread;
  VirtioInterrupt* interrupt = nullptr;
};

}  // namespace hostvisor::testing
