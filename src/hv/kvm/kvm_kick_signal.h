// The signal that kicks a vCPU thread out of KVM_RUN. Its handler does
// nothing: the point is only that a pending signal makes KVM_RUN return
// EINTR. It is installed without SA_RESTART so the ioctl is not restarted.
#pragma once

namespace hostvisor::kvm {

// The real-time signal used for kicks (SIGRTMIN + 1: SIGRTMIN itself is the
// one other libraries most often claim).
int kick_signal();

// Installs the no-op handler, once per process.
void install_kick_handler();

// Unblocks the kick signal on the calling thread, once per thread (a thread
// created with it blocked could otherwise never be kicked).
void allow_kicks_on_this_thread();

}  // namespace hostvisor::kvm
