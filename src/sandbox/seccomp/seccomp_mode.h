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

// kill; off in a build with AddressSanitizer, whose run-time makes calls
// (its shadow memory's mappings, its reports' /proc reads) no filter here
// allows. --seccomp=kill still applies filters there when asked.
SeccompMode default_seccomp_mode();

}  // namespace hostvisor::sandbox
