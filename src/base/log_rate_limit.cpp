#include "base/log_rate_limit.h"

namespace hostvisor {

bool LogRateLimit::allow(uint64_t* held_back, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (passed_ < kBurst) {
    ++passed_;
    if (passed_ == kBurst) next_ = now + kInterval;
  } else if (now >= next_) {
    next_ = now + kInterval;
  } else {
    ++held_back_;
    return false;
  }
  *held_back = held_back_;
  held_back_ = 0;
  return true;
}

}  // namespace hostvisor
