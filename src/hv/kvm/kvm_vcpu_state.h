// Conversions between KVM's per-vCPU state structs and the neutral VcpuState
// parts: the 1 KiB LAPIC register page, the XSAVE buffer (or kvm_fpu where
// KVM lacks XSAVE) and kvm_vcpu_events. Pure functions, so they are tested
// without /dev/kvm; KvmVcpu::save_state()/restore_state() do the ioctls.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>

#include "hv/vcpu_state.h"

namespace hostvisor::kvm {

// The MSRs KVM keeps outside the neutral MSR list: the TSC is VcpuState::tsc,
// the TSC deadline LocalApicState::tsc_deadline.
constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrTscDeadline = 0x6e0;

// KVM's APIC timer counts at 1 GHz before its divider (APIC_BUS_CYCLE_NS,
// unless the VMM sets KVM_CAP_X86_APIC_BUS_CYCLES_NS, which hostvisor does not).
constexpr uint64_t kKvmApicBusCycleNs = 1;

// The page holds TMCCT (the current count) where the neutral state has the
// time elapsed since the count was loaded; `apic_base` is IA32_APIC_BASE
// (from the system registers). Events KVM keeps elsewhere (NMI, INIT, SIPI)
// are the caller's, from kvm_vcpu_events and the MP state.
LocalApicState lapic_from_kvm(const kvm_lapic_state& page, uint64_t apic_base);
// Writes the registers over `page` (read from KVM first); TMCCT gets the
// current count, which KVM_SET_LAPIC starts the timer from.
void lapic_to_kvm(const LocalApicState& lapic, kvm_lapic_state& page);

// The standard (uncompacted) XSAVE layout KVM_GET/SET_XSAVE use: the
// FXSAVE64 legacy area, the header at 512, AVX's upper halves at 576.
constexpr size_t kXsaveLegacySize = 512;
constexpr size_t kXsaveYmmOffset = 576;
constexpr size_t kXsaveMinimumSize = 4096;
FpuState fpu_from_xsave(std::span<const uint8_t> xsave);
// Overwrites the x87, SSE and AVX parts of `xsave` (read from KVM first, so
// other components stay) and sets their XSTATE_BV bits: AVX's only if
// `xcr0` enables it.
void fpu_to_xsave(const FpuState& fpu, uint64_t xcr0, std::span<uint8_t> xsave);
FpuState fpu_from_kvm(const kvm_fpu& fpu);
kvm_fpu fpu_to_kvm(const FpuState& fpu);

PendingEvents events_from_kvm(const kvm_vcpu_events& events);
// NMI pending and the SIPI vector come from the LAPIC state.
kvm_vcpu_events events_to_kvm(const PendingEvents& events, const LocalApicState& lapic);

// The MP state for the neutral run state, and back.
uint32_t mp_state_to_kvm(const VcpuState& state);
void mp_state_from_kvm(uint32_t mp_state, VcpuState& state);

}  // namespace hostvisor::kvm
