// Conversions between KVM's in-kernel chipset state (KVM_GET/SET_IRQCHIP,
// KVM_GET/SET_PIT2) and the neutral IrqchipState parts. Pure functions, so
// they are tested without /dev/kvm; KvmVm::save_irqchip()/restore_irqchip()
// do the ioctls.
//
// What KVM does not keep: the 8259's single-mode flag and ICW3 (KVM always
// cascades; the PC wiring is reported), port 0x61's parity/channel-check
// bits, and a PIT count's progress across KVM_SET_PIT2, which reloads every
// count (the period in progress starts again: at most 55 ms later).
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "hv/irqchip_state.h"

namespace hostvisor::kvm {

PicChipState pic_from_kvm(const kvm_pic_state& chip, bool master);
// Writes over `chip` (read from KVM first, for its ELCR mask).
void pic_to_kvm(const PicChipState& state, kvm_pic_state& chip);

IoApicState ioapic_from_kvm(const kvm_ioapic_state& ioapic);
void ioapic_to_kvm(const IoApicState& state, kvm_ioapic_state& ioapic);

// `now_ns` is the host's CLOCK_MONOTONIC, the clock of count_load_time.
PitState pit_from_kvm(const kvm_pit_state2& pit, int64_t now_ns);
kvm_pit_state2 pit_to_kvm(const PitState& state, int64_t now_ns);

}  // namespace hostvisor::kvm
