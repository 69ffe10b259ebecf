#include "devices/virtio/reschedule_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdint>

namespace hostvisor {

Result<RescheduleTimer> RescheduleTimer::create() {
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) return Error::from_errno("timerfd_create for a virtio device's rescheduling");
  return RescheduleTimer(UniqueFd(fd));
}

void RescheduleTimer::arm(std::chrono::nanoseconds delay) {
  // An all-zero it_value disarms a timerfd: "at once" is the shortest non-zero expiry.
  const int64_t ns = delay.count() > 0 ? delay.count() : 1;
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  // Cannot fail for a valid timerfd and a normalised value.
  (void)::timerfd_settime(fd_.get(), 0, &spec, nullptr);
}

void RescheduleTimer::disarm() {
  const itimerspec off{};
  (void)::timerfd_settime(fd_.get(), 0, &off, nullptr);
  consume();
}

bool RescheduleTimer::consume() {
  uint64_t expirations = 0;
  return ::read(fd_.get(), &expirations, sizeof expirations) == sizeof expirations && expirations > 0;
}

}  // namespace hostvisor
