// What an event loop does with VirtioDevice::reschedule_fd(), for tests:
// wait for it, then run the device's rescheduled turn.
#pragma once

#include <poll.h>

#include "devices/virtio/virtio_device.h"

namespace hostvisor::testing {

// Waits up to `timeout_ms` for the device to ask for another turn and runs
// it; false if it did not ask.
inline bool run_rescheduled_turn(VirtioDevice& device, int timeout_ms = 1000) {
  pollfd p{device.reschedule_fd(), POLLIN, 0};
  if (p.fd < 0 || ::poll(&p, 1, timeout_ms) != 1) return false;
  device.run_rescheduled();
  return true;
}

}  // namespace hostvisor::testing
