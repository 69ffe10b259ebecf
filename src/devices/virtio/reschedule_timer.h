// The way a virtio device asks to be called again later: a timerfd the
// device arms and the machine's event loop watches (see
// VirtioDevice::reschedule_fd()). Armed "now" it is a wake-up for the next
// loop turn (a drain that stopped at its budget); armed with a delay it is a
// retry (a host resource that is not there yet, e.g. entropy).
//
// A plain fd keeps devices free of the event loop's type: whoever runs
// devices watches the fd and calls run_rescheduled() when it is readable.
#pragma once

#include <chrono>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor {

class RescheduleTimer {
 public:
  static Result<RescheduleTimer> create();

  int fd() const { return fd_.get(); }
  // Makes fd() readable after `delay` (at once for zero). Re-arming replaces
  // the previous expiry.
  void arm(std::chrono::nanoseconds delay);
  void disarm();
  // Clears a readable fd(); true if the timer had expired.
  bool consume();

 private:
  explicit RescheduleTimer(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace hostvisor
