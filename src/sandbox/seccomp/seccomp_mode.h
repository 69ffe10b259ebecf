// --seccomp=kill|log|off: what a thread's forbidden system call does.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace hostvisor::sandbox {

enum class SeccompMode {
  // SECCOMP_RET_TRAP: the SIGSYS handler names the thread kind and the call
  // on stderr, then the process ends with kForbiddenSyscallStatus.
  kKill,
  // SECCOMP_RET_LOG: the call goes ahead and the kernel logs it (dmesg, or
  // the audit log), to find what a filter lacks.
  kLog,
  // No filters at all (debugging).
  kOff,
};

// The exit status of a process whose thread made a forbidden call under
// kill: 128 + SIGSYS, what a shell shows for a process SIGSYS killed.
inline constexpr int kForbiddenSyscallStatus = 159;

Result<SeccompMode> parse_seccomp_mode(std::string_view text);
const char* seccomp_mode_name(SeccompMode mode);

// kill, in an ASan+UBSan build too: its run-time's allocator and shadow
// memory need nothing the filters refuse, and its leak check at exit gets
// ptrace in that build's setup filter (allow_lists.h). What the filters do
// refuse there is the report's symbolizer (a program ASan starts on a
// vCPU or worker thread): a report then ends with seccomp's line instead
// of a symbolized stack; rerun with --seccomp=off for it (docs/fuzzing.md).
SeccompMode default_seccomp_mode();

}  // namespace hostvisor::sandbox
