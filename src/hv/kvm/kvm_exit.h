// Turns the exit KVM left in a vCPU's kvm_run page into the neutral VcpuExit.
#pragma once

#include <linux/kvm.h>

#include <cstddef>

#include "hv/vcpu_exit.h"

namespace hostvisor::kvm {

// `run` is the vCPU's mapping of `run_size` bytes. I/O exits point their
// `data` into it: the kernel reads it back on the next KVM_RUN, which is how
// reads complete. Offsets and lengths from the page are checked against
// run_size, so a malformed page becomes a FailureExit, never a stray access.
VcpuExit translate_exit(kvm_run& run, size_t run_size);

// Name of a KVM_EXIT_* reason, for messages.
const char* exit_reason_name(uint32_t reason);

}  // namespace hostvisor::kvm
