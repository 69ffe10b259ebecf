// install_thread_filter(kind): the calling thread's seccomp filter, first
// thing in each thread's function (allow_lists.h says how they stack).
#pragma once

#include "base/result.h"
#include "sandbox/seccomp/seccomp_mode.h"
#include "sandbox/seccomp/thread_kind.h"

namespace hostvisor::sandbox {

// The process's mode, chosen by the command that runs (run, switch,
// daemon) from --seccomp before it installs any filter; under kill it also
// installs the SIGSYS reporter, under log it says so on stderr. Until a
// command sets it the mode is off, so library code and unit tests that run
// a thread function are not filtered unless they ask.
void set_process_seccomp_mode(SeccompMode mode);
SeccompMode process_seccomp_mode();

// Installs `kind`'s filter on the calling thread (nothing when the mode is
// off), names the thread after its kind (worker kinds only: the process's
// main thread keeps the program's name), and logs at info level which
// filter it installed.
Result<void> try_install_thread_filter(ThreadKind kind);

// The same for thread functions, which have nobody to hand an error to: a
// filter asked for that cannot be installed ends the process (status 1)
// with one line, rather than leave the thread unconfined.
void install_thread_filter(ThreadKind kind);

}  // namespace hostvisor::sandbox
