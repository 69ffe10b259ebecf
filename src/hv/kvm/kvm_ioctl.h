// ioctl on a KVM fd, retried when a signal interrupts it before it did
// anything (every KVM ioctl but KVM_RUN is safe to restart).
#pragma once

#include <sys/ioctl.h>

#include <cerrno>

namespace hostvisor::kvm {

template <typename Arg>
int kvm_ioctl(int fd, unsigned long request, Arg arg) {
  int r;
  do {
    r = ::ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

}  // namespace hostvisor::kvm
