// One timer service for every timer of the emulated platform (the PIT and
// each vCPU's local APIC timer) instead of a thread per timer: it keeps each
// timer's deadline and, on one host thread, calls the callbacks that are due.
//
// Callbacks run WITHOUT the service's lock held, so they may call arm() or
// disarm() (typically re-arming a periodic timer). A callback can run just
// after its owner re-armed or disarmed it (a race between threads), so owners
// treat a callback as "look at your state at time now_ns", never as proof that
// the deadline they last set is due. Timers cannot be removed: an owner must
// stop() the service (or otherwise know run_due() is not running) before it
// goes away, as EmuPlatform does.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "base/result.h"
#include "hv/emu/platform/platform_clock.h"

namespace hostvisor::emu {

class PlatformTimers {
 public:
  using TimerId = uint32_t;
  // Receives the clock time at which the service found the timer due.
  using Callback = std::function<void(uint64_t now_ns)>;

  explicit PlatformTimers(const Clock& clock) : clock_(clock) {}
  ~PlatformTimers();  // stops the thread
  PlatformTimers(const PlatformTimers&) = delete;
  PlatformTimers& operator=(const PlatformTimers&) = delete;

  const Clock& clock() const { return clock_; }

  // Registers a timer (disarmed). Ids are never reused.
  TimerId add(Callback callback);
  // Sets (or moves) the timer's deadline, in clock nanoseconds. A deadline in
  // the past fires on the next run_due() / promptly on the thread.
  void arm(TimerId id, uint64_t deadline_ns);
  void disarm(TimerId id);
  std::optional<uint64_t> deadline(TimerId id) const;
  // The earliest armed deadline of all timers.
  std::optional<uint64_t> next_deadline() const;

  // Fires every timer whose deadline is <= clock().now_ns() (each is disarmed
  // before its callback runs). Returns how many fired. Tests with a
  // ManualClock call this instead of start().
  size_t run_due();

  // Starts the host thread that sleeps until the next deadline and runs
  // run_due(). Only meaningful with a clock that advances by itself.
  Result<void> start();
  // Stops and joins the thread (idempotent).
  void stop();

 private:
  struct Timer {
    Callback callback;
    std::optional<uint64_t> deadline_ns;
  };
  void thread_main();

  const Clock& clock_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Timer> timers_;  // a deque: run_due() keeps pointers across add()
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace hostvisor::emu
