// Drives the CMOS RTC's interrupts from the event loop. The RTC computes
// them lazily (when it is read or polled); this timer polls it when its next
// event is due, and at least once a second, so a periodic or alarm
// interrupt the guest newly enabled starts within a second.
#pragma once

#include <memory>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor {

class CmosRtc;
class EventLoop;

class RtcTimer {
 public:
  // Watches the timer on `loop` until destroyed; both must outlive it.
  static Result<std::unique_ptr<RtcTimer>> start(EventLoop& loop, std::shared_ptr<CmosRtc> rtc);
  ~RtcTimer();
  RtcTimer(const RtcTimer&) = delete;
  RtcTimer& operator=(const RtcTimer&) = delete;

 private:
  RtcTimer(EventLoop& loop, std::shared_ptr<CmosRtc> rtc, UniqueFd timer)
      : loop_(loop), rtc_(std::move(rtc)), timer_(std::move(timer)) {}
  void expired();
  void arm();

  EventLoop& loop_;
  std::shared_ptr<CmosRtc> rtc_;
  UniqueFd timer_;
};

}  // namespace hostvisor
