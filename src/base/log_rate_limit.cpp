#include "base/log_rate_limit.h"

namespace hostvisor {

LogRateLimit::LogRateLimit(unsigned burst, Clock::duration interval)
    : burst_(burst == 0 ? 1 : burst),
      interval_(interval <= Clock::duration::zero() ? kDefaultInterval : interval),
      tokens_(burst_) {}

std::optional<uint64_t> LogRateLimit::admit(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (!started_) {
    started_ = true;
    refilled_at_ = now;
  }
  if (now > refilled_at_) {
    // Whole intervals since the last refill each give one token back; the
    // remainder carries over so a steady flood gets exactly one line per interval.
    auto intervals = static_cast<uint64_t>((now - refilled_at_) / interval_);
    if (intervals >= burst_ - tokens_) {
      tokens_ = burst_;
      refilled_at_ = now;
    } else {
      tokens_ += static_cast<unsigned>(intervals);
      refilled_at_ += interval_ * static_cast<int64_t>(intervals);
    }
  }
  if (tokens_ == 0) {
    ++suppressed_;
    return std::nullopt;
  }
  --tokens_;
  uint64_t dropped = suppressed_;
  suppressed_ = 0;
  return dropped;
}

}  // namespace hostvisor
