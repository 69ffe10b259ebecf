#include "vmm/rtc_timer.h"

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "devices/legacy/cmos_rtc.h"
#include "vmm/event_loop.h"

namespace hostvisor {

namespace {
constexpr int64_t kNanosecondsPerSecond = 1000000000;
}

Result<std::unique_ptr<RtcTimer>> RtcTimer::start(EventLoop& loop, std::shared_ptr<CmosRtc> rtc) {
  // CLOCK_REALTIME: the RTC keeps the host's wall-clock time.
  const int fd = ::timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) return Error::from_errno("timerfd_create");
  std::unique_ptr<RtcTimer> timer(new RtcTimer(loop, std::move(rtc), UniqueFd(fd)));
  RtcTimer* self = timer.get();
  HV_TRY(loop.add(fd, [self](uint32_t) { self->expired(); }));
  timer->arm();
  return timer;
}

RtcTimer::~RtcTimer() { loop_.remove(timer_.get()); }

void RtcTimer::expired() {
  uint64_t expirations;
  [[maybe_unused]] ssize_t n = ::read(timer_.get(), &expirations, sizeof expirations);
  rtc_->poll();
  arm();
}

void RtcTimer::arm() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  const int64_t now_ns = static_cast<int64_t>(now.tv_sec) * kNanosecondsPerSecond + now.tv_nsec;
  int64_t due = now_ns + kNanosecondsPerSecond;
  if (auto next = rtc_->next_event_ns(); next && *next < due) due = std::max(*next, now_ns + 1);
  itimerspec spec{};
  spec.it_value.tv_sec = due / kNanosecondsPerSecond;
  spec.it_value.tv_nsec = due % kNanosecondsPerSecond;
  ::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
}

}  // namespace hostvisor
