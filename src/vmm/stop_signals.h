// The signals that end `hostvisor run` (SIGINT, SIGTERM, SIGHUP) and
// SIGWINCH (the terminal's new size), taken synchronously through one
// signalfd that lives for the whole run, across the reboots that rebuild the
// Machine. Blocking them once, before any thread exists, means a signal is
// never acted on by the kernel's default action in some thread, and never
// lost: one that arrives while no machine is running (between two machines,
// while one is being built, while its vCPU threads are joining) stays
// pending until the next look, and once a stop signal has been read it is
// remembered, so whoever reads it first cannot swallow it from the others.
#pragma once

#include <signal.h>

#include <atomic>
#include <memory>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor {

class StopSignals {
 public:
  // Blocks the signals in the calling thread and opens the signalfd. Call it
  // before any thread is started: threads inherit the mask, and a thread
  // that does not block them may be handed one. The destructor restores the
  // previous mask.
  static Result<std::unique_ptr<StopSignals>> install();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Readable (for an event loop) while a signal is pending.
  int fd() const { return fd_.get(); }

  struct Taken {
    int stop_signal = 0;   // the stop signal read now or earlier; 0 if none yet
    bool resized = false;  // a SIGWINCH was read now
  };
  // Reads every signal pending now without blocking. Thread-safe.
  Taken take();

  // The first stop signal read so far (0: none). Thread-safe.
  int stop_signal() const { return stop_signal_.load(); }

  // "stopped by Terminated", for the run's last line.
  static std::string describe_stop(int signal);

 private:
  StopSignals(UniqueFd fd, const sigset_t& previous_mask) : fd_(std::move(fd)), previous_mask_(previous_mask) {}

  UniqueFd fd_;
  sigset_t previous_mask_;
  std::atomic<int> stop_signal_{0};
};

}  // namespace hostvisor
