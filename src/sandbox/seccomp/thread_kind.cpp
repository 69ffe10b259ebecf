#include "sandbox/seccomp/thread_kind.h"

namespace hostvisor::sandbox {

const char* thread_kind_name(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kSetup: return "setup";
    case ThreadKind::kVcpu: return "vcpu";
    case ThreadKind::kEventLoop: return "event-loop";
    case ThreadKind::kIoWorker: return "io-worker";
    case ThreadKind::kShareWorker: return "share-worker";
    case ThreadKind::kControl: return "control";
    case ThreadKind::kSwitchProcess: return "switch";
    case ThreadKind::kDaemon: return "daemon";
  }
  return "unknown";
}

}  // namespace hostvisor::sandbox
