// The test fake of a transport's interrupt side: records what a device
// signals, for every virtio device test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "devices/virtio/virtio_device.h"

namespace hostvisor::testing {

class RecordingVirtioInterrupt : public VirtioInterrupt {
 public:
  void signal_used(uint16_t queue) override { used.push_back(queue); }
  void signal_config_change() override { ++config_changes; }
  void signal_needs_reset(const Error& reason) override { needs_reset.push_back(reason.message()); }

  std::vector<uint16_t> used;  // queues, in signalling order
  int config_changes = 0;
  std::vector<std::string> needs_reset;  // the reasons
};

}  // namespace hostvisor::testing
