#include "vmm/stop_signals.h"

#include <pthread.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hostvisor {

namespace {

sigset_t handled_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGWINCH);
  return signals;
}

}  // namespace

Result<std::unique_ptr<StopSignals>> StopSignals::install() {
  const sigset_t signals = handled_signals();
  sigset_t previous;
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &signals, &previous); rc != 0)
    return Error(ErrorCode::kIo, std::string("blocking SIGINT/SIGTERM/SIGHUP/SIGWINCH: ") + std::strerror(rc));
  const int fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) {
    Error error = Error::from_errno("signalfd for SIGINT/SIGTERM/SIGHUP/SIGWINCH");
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return error;
  }
  return std::unique_ptr<StopSignals>(new StopSignals(UniqueFd(fd), previous));
}

StopSignals::~StopSignals() {
  fd_.reset();
  ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

StopSignals::Taken StopSignals::take() {
  Taken taken;
  for (;;) {
    signalfd_siginfo info{};
    const ssize_t n = ::read(fd_.get(), &info, sizeof info);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof info)) break;  // EAGAIN: nothing more is pending
    const int signal = static_cast<int>(info.ssi_signo);
    if (signal == SIGWINCH) {
      taken.resized = true;
    } else {
      int none = 0;
      stop_signal_.compare_exchange_strong(none, signal);  // the first one is the one reported
    }
  }
  taken.stop_signal = stop_signal_.load();
  return taken;
}

std::string StopSignals::describe_stop(int signal) { return std::string("stopped by ") + ::strsignal(signal); }

}  // namespace hostvisor
