// A token bucket for log lines a guest or a peer can cause: a burst goes out
// at once, then one line per interval; lines held back are counted and the
// count is reported with the next line that goes out. Without it a guest that
// repeats a bad request in a loop fills the host's disk through stderr and
// spends the event loop's time formatting lines nobody reads.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include "base/log.h"

namespace hostvisor {

class LogRateLimit {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr unsigned kDefaultBurst = 10;
  static constexpr Clock::duration kDefaultInterval = std::chrono::seconds(1);

  explicit LogRateLimit(unsigned burst = kDefaultBurst, Clock::duration interval = kDefaultInterval);

  // Whether a line may go out at `now`: nothing if it is to be dropped, else
  // how many lines were dropped since the last one that went out. Any thread.
  std::optional<uint64_t> admit(Clock::time_point now);

 private:
  std::mutex mutex_;
  const unsigned burst_;
  const Clock::duration interval_;
  unsigned tokens_;
  Clock::time_point refilled_at_{};
  bool started_ = false;
  uint64_t suppressed_ = 0;
};

// One line through `limiter`; see HV_LOG_*_LIMITED below.
template <typename... Args>
void log_rate_limited(LogRateLimit& limiter, spdlog::level::level_enum level, spdlog::format_string_t<Args...> format,
                      Args&&... args) {
  if (!spdlog::should_log(level)) return;
  auto admitted = limiter.admit(LogRateLimit::Clock::now());
  if (!admitted) return;
  if (*admitted > 0) spdlog::log(level, "({} more like the next line were suppressed)", *admitted);
  spdlog::log(level, format, std::forward<Args>(args)...);
}

}  // namespace hostvisor

// For every log line a guest, a disk image or a network peer can cause over
// and over: each call site has its own limiter (a burst of
// LogRateLimit::kDefaultBurst lines, then one a second), shared by every
// device that runs that line.
#define HV_LOG_LIMITED_AT(level, ...)                                       \
  do {                                                                      \
    static ::hostvisor::LogRateLimit hv_log_site_limiter;                   \
    ::hostvisor::log_rate_limited(hv_log_site_limiter, level, __VA_ARGS__); \
  } while (0)
#define HV_LOG_INFO_LIMITED(...) HV_LOG_LIMITED_AT(spdlog::level::info, __VA_ARGS__)
#define HV_LOG_WARN_LIMITED(...) HV_LOG_LIMITED_AT(spdlog::level::warn, __VA_ARGS__)
#define HV_LOG_ERROR_LIMITED(...) HV_LOG_LIMITED_AT(spdlog::level::err, __VA_ARGS__)
