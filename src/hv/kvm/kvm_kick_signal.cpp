#include "hv/kvm/kvm_kick_signal.h"

#include <pthread.h>
#include <signal.h>

#include <mutex>

namespace hostvisor::kvm {
namespace {

void on_kick(int) {}

}  // namespace

int kick_signal() { return SIGRTMIN + 1; }

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = on_kick;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: KVM_RUN must come back with EINTR
    sigaction(kick_signal(), &action, nullptr);
  });
}

void allow_kicks_on_this_thread() {
  thread_local bool done = false;
  if (done) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kick_signal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  done = true;
}

}  // namespace hostvisor::kvm
