// A limit on log lines a guest can trigger at will (a device refusing a
// ring, an MSI it cannot deliver, a BAR placed over another): without it a
// guest repeating the mistake floods the host's log and spends the VMM's
// time formatting. Each call site gets its own limiter: the first kBurst
// lines pass, then one per kInterval; the next line that passes after some
// were held back says how many.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

#include "base/log.h"

namespace hostvisor {

class LogRateLimit {
 public:
  static constexpr unsigned kBurst = 10;
  static constexpr std::chrono::seconds kInterval{10};
  using Clock = std::chrono::steady_clock;

  // Whether a line may be logged now; when it may, *held_back is the number
  // of lines refused since the last one that passed.
  bool allow(uint64_t* held_back, Clock::time_point now = Clock::now());

 private:
  std::mutex mutex_;
  unsigned passed_ = 0;  // lines passed in the current burst
  Clock::time_point next_;
  uint64_t held_back_ = 0;
};

}  // namespace hostvisor

#define HV_LOG_LIMITED_(log_function, ...)                                                                \
  do {                                                                                                    \
    static ::hostvisor::LogRateLimit hv_log_limit_;                                                       \
    uint64_t hv_log_held_back_ = 0;                                                                       \
    if (hv_log_limit_.allow(&hv_log_held_back_)) {                                                        \
      if (hv_log_held_back_)                                                                              \
        spdlog::log_function("({} more like the next were not logged: rate-limited)", hv_log_held_back_); \
      spdlog::log_function(__VA_ARGS__);                                                                  \
    }                                                                                                     \
  } while (0)

// Warnings and errors a guest can cause.
#define HV_LOG_WARN_LIMITED(...) HV_LOG_LIMITED_(warn, __VA_ARGS__)
#define HV_LOG_ERROR_LIMITED(...) HV_LOG_LIMITED_(error, __VA_ARGS__)
