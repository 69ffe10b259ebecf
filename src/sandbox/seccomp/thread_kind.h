// What a thread of hostvisor is for, which decides the seccomp filter it
// runs under (allow_lists.h). docs/seccomp.md says what each may do and why.
#pragma once

#include <cstddef>

namespace hostvisor::sandbox {

enum class ThreadKind {
  // The VM process's main thread: parses flags, builds (and on a guest
  // reset rebuilds) the machine, spawns a network's switch, tears down.
  kSetup,
  // One per vCPU: runs guest code and the device code its exits reach.
  kVcpu,
  // The event loop (console, signals, notifies, completions, the NAT), the
  // software CPU's timer thread and the guest-clock thread.
  kEventLoop,
  // Block I/O workers: a disk's request thread, the thread-pool engine.
  kIoWorker,
  // virtio-fs workers: FUSE requests served on a --share directory.
  kShareWorker,
  // The control socket's thread (--control).
  kControl,
  // `hostvisor switch`: an internal or host-only network's switch process.
  kSwitchProcess,
  // `hostvisor daemon`: every thread of it (it forks and execs VM processes).
  kDaemon,
};

inline constexpr size_t kThreadKindCount = 8;

// "vcpu", "event-loop", ...: the name in messages and in docs/seccomp.md.
const char* thread_kind_name(ThreadKind kind);

}  // namespace hostvisor::sandbox
