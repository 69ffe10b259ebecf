// Conversions between KVM's register structs and the backend-neutral ones.
#pragma once

#include <linux/kvm.h>

#include "hv/cpu_state.h"

namespace hostvisor::kvm {

Registers from_kvm(const kvm_regs& regs);
kvm_regs to_kvm(const Registers& regs);

Segment from_kvm(const kvm_segment& segment);
kvm_segment to_kvm(const Segment& segment);

SystemRegisters from_kvm(const kvm_sregs& sregs);
// Writes `sregs` over `out`, leaving the fields the neutral state does not
// carry (the pending-interrupt bitmap) as they were.
void to_kvm(const SystemRegisters& sregs, kvm_sregs& out);

}  // namespace hostvisor::kvm
