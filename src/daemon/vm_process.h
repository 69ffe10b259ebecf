// The process that runs one VM (`hostvisor run --headless --control ...`):
// started in a session of its own so it outlives the daemon, with its stderr
// in the VM's log. A pid alone is not an identity (pids are reused), so the
// daemon records the pid with the process's start time from /proc and a
// restarted daemon trusts a pid only when both still match.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::daemon {

struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time = 0;  // /proc/PID/stat field 22, in clock ticks since boot
};

// Starts `binary` with `args` (argv[1..]) in a new session: stdin /dev/null,
// stdout and stderr appended to log_path, no other descriptors inherited.
Result<ProcessIdentity> spawn_detached(const std::string& binary, const std::vector<std::string>& args,
                                       const std::string& log_path);

// True while `process` runs (not a zombie) and is still the same process.
bool is_running(const ProcessIdentity& process);

// Reaps `pid` if it is our child and has ended (never blocks).
void reap_if_child(pid_t pid);

// The last `max_bytes` of a log, for an error that says why a VM died.
std::string log_tail(const std::string& path, size_t max_bytes = 600);

}  // namespace hostvisor::daemon
