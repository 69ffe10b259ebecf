// Under --seccomp=kill a forbidden call raises SIGSYS (SECCOMP_RET_TRAP);
// this handler says which thread kind made which call and ends the process.
#pragma once

#include "sandbox/seccomp/thread_kind.h"

namespace hostvisor::sandbox {

// Resolves every system call's name into a static table (libseccomp's
// resolver allocates, which a signal handler must not) and installs the
// SIGSYS handler. Idempotent; the first call should come before threads.
void install_forbidden_syscall_reporter();

// The kind this thread's reports name (the last filter it installed).
void set_reported_thread_kind(ThreadKind kind);

}  // namespace hostvisor::sandbox
