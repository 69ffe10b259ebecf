// Runs a program as a child process with a time limit and captures what it
// writes, for tests that drive the hostvisor binary end to end.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hostvisor::testing {

struct ChildResult {
  bool started = false;     // false: fork/exec failed; error says why
  bool timed_out = false;   // killed with SIGKILL at the deadline
  bool terminated = false;  // sent SIGTERM because stop_when said so
  int exit_status = -1;     // when it exited normally
  int signal = 0;           // when a signal ended it
  std::string out, err;     // stdout and stderr, each capped at kMaxCapture
  std::string error;
  std::chrono::milliseconds elapsed{0};
  std::chrono::milliseconds stop_to_exit{0};  // from the stop signal to the child's end, when terminated
  // The largest VmRSS of the child seen while it ran (sampled about every
  // kRssSampleInterval while it writes output or a stop condition waits),
  // in KiB; 0 if never sampled.
  uint64_t peak_rss_kib = 0;

  std::string describe() const;  // "exit status 33", "killed by signal 9", ...
};

constexpr size_t kMaxCapture = 4 << 20;
constexpr std::chrono::milliseconds kRssSampleInterval{20};

// Runs argv[0] (a path) with argv, stdin from /dev/null, or from a pipe that
// holds `input` and then ends (at most a pipe's buffer, 64 KiB) when input is
// not empty. If stop_when is given, it sees stdout as it grows, and is asked
// again at least every few milliseconds (so it may also look at the clock);
// once it returns true the child gets `stop_signal` (SIGTERM unless told) and
// has kTerminateGrace to exit before it is killed (timed_out).
using StopCondition = std::function<bool(const std::string& out)>;
constexpr std::chrono::seconds kTerminateGrace{10};
ChildResult run_child(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                      const StopCondition& stop_when = nullptr, const std::string& input = "", int stop_signal = 0);

}  // namespace hostvisor::testing
