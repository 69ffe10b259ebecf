// One allow-list per thread kind: the system calls a thread of that kind
// makes, with argument conditions where the argument is what matters.
//
// How the filters stack. A thread's filters are every filter installed on
// it or on the thread that created it (seccomp keeps them across clone and
// execve and never takes one off), and a call must pass all of them. So:
//
//   - The VM process's main thread installs the setup filter before it
//     starts any thread (cli/run_command.cpp); every thread of the process
//     is under it, and every kind of the VM process is a subset of setup.
//     The switch process main spawns inherits setup too: switch ⊆ setup.
//   - Each thread installs its own kind's filter first thing in its thread
//     function, before it touches guest data (docs/ARCHITECTURE.md's
//     threads table names the place).
//   - A thread started lazily by a filtered thread is under both filters:
//     a disk's I/O worker starts at its first request, on a vCPU or the
//     event loop, so io-worker ⊆ vcpu and io-worker ⊆ event-loop. Filtered
//     threads may create threads (clone with CLONE_THREAD) and nothing else.
//   - The daemon forks and execs VM processes (which then add their own),
//     so its one filter, installed before its first thread, is setup's and
//     process creation: setup ⊆ daemon.
//
// allow_lists_test.cpp checks each of these inclusions.
#pragma once

#include <cstdint>
#include <vector>

#include "sandbox/seccomp/thread_kind.h"

namespace hostvisor::sandbox {

// A condition on argument `arg` (0..5): (value & mask) == equals.
struct ArgCondition {
  unsigned arg = 0;
  uint64_t mask = ~uint64_t{0};
  uint64_t equals = 0;
  bool operator==(const ArgCondition&) const = default;
};

// The call is allowed when every condition holds (always, with none). Several
// rules for one call are alternatives.
struct AllowRule {
  int syscall = 0;
  std::vector<ArgCondition> when;
};

struct AllowList {
  std::vector<AllowRule> rules;
  // Calls answered ENOSYS instead of being allowed or trapped: clone3,
  // whose flags live in memory a filter cannot read; glibc then creates
  // the thread with clone, whose flags it can.
  std::vector<int> enosys;
};

AllowList allow_list(ThreadKind kind);

// Whether this build has LeakSanitizer (part of ASan), whose leak check at
// exit stops the process's threads with ptrace from a helper it clones off
// the exiting thread (set-up's, the main thread): in such a build only, the
// setup filter allows ptrace, else the helper's first ptrace traps and the
// exit waits for it for ever. A release build never allows it.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
inline constexpr bool kLeakSanitizerAtExit = true;
#else
inline constexpr bool kLeakSanitizerAtExit = false;
#endif
#else
inline constexpr bool kLeakSanitizerAtExit = false;
#endif

// The numbers of the KVM ioctls whose struct ends in a flexible array, as C
// lays the struct out (see allow_lists.cpp): what the lists allow.
extern const unsigned long kKvmGetMsrsNumber, kKvmSetMsrsNumber, kKvmSetGsiRoutingNumber, kKvmGetXsaveNumber,
    kKvmSetXsaveNumber, kKvmGetXsave2Number;

}  // namespace hostvisor::sandbox
