// Everything needed to resume a vCPU on either backend, in one
// backend-neutral struct: a snapshot taken on KVM restores on the software
// CPU and the other way round. Backends convert to and from it in
// Vcpu::save_state() / restore_state() (hv/hypervisor.h).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "hv/cpu_state.h"
#include "hv/lapic_state.h"

namespace hostvisor {

// x87, SSE and AVX registers in the FXSAVE/XSAVE sense, independent of
// either backend's buffer layout.
struct FpuState {
  uint16_t fcw = 0x37f;
  uint16_t fsw = 0;  // TOP in bits 11-13
  uint8_t ftw = 0;   // abridged tag word (FXSAVE): bit i = physical register Ri not empty
  uint16_t fop = 0;  // last x87 opcode (11 bits)
  uint64_t fip = 0, fdp = 0;
  uint16_t fcs = 0, fds = 0;
  // ST(0)..ST(7) in stack order (as FXSAVE stores them), 80 bits each, little-endian.
  std::array<std::array<uint8_t, 10>, 8> st{};
  uint32_t mxcsr = 0x1f80;
  std::array<std::array<uint8_t, 16>, 16> xmm{};
  // Bits 255:128 of YMM0-15 (XSAVE component 2); zero while XCR0.AVX is clear.
  std::array<std::array<uint8_t, 16>, 16> ymm_high{};

  bool operator==(const FpuState&) const = default;
};

// Events a vCPU was in the middle of delivering, or must take first
// (KVM_GET/SET_VCPU_EVENTS). The software CPU delivers an event in one step,
// so it saves none of these but the shadow and NMI masking; it restores them
// all (an injected event is delivered before the first instruction).
struct PendingEvents {
  // An exception: injected = its delivery had started; pending = raised and
  // not yet delivered. CR2 of a #PF is already in the system registers.
  bool exception_injected = false;
  bool exception_pending = false;
  uint8_t exception_vector = 0;
  bool exception_has_error = false;
  uint32_t exception_error = 0;
  // An interrupt whose delivery had started. `soft` marks INT n (RIP still
  // points at the instruction, which a backend may execute again instead).
  bool interrupt_injected = false;
  uint8_t interrupt_vector = 0;
  bool interrupt_soft = false;
  bool nmi_injected = false;
  bool nmi_masked = false;  // an NMI handler runs: NMIs blocked until IRET
  // Interrupt shadow: no interrupt before the next instruction completes.
  bool shadow_sti = false;
  bool shadow_mov_ss = false;
  // NMI pending, INIT and SIPI received are in LocalApicState.

  bool operator==(const PendingEvents&) const = default;
};

struct VcpuState {
  Registers regs;
  SystemRegisters sregs;  // includes EFER, CR8 and IA32_APIC_BASE
  FpuState fpu;
  uint64_t xcr0 = 1;  // x87 only (XSETBV never executed)
  // The guest TSC when the state was taken, and its rate. A restore sets the
  // TSC to this value, so it continues without a jump; the rate is kept
  // where the backend can set it (see docs/ARCHITECTURE.md).
  uint64_t tsc = 0;
  uint32_t tsc_khz = 0;
  // The architectural MSRs of saved_msr_indices() the backend holds, in that
  // order; EFER, APIC_BASE, TSC, TSC_DEADLINE and FS/GS base live elsewhere.
  std::vector<Msr> msrs;
  PendingEvents events;
  bool halted = false;  // in HLT (an AP waiting for SIPI is lapic.waiting_for_sipi)
  LocalApicState lapic;

  bool operator==(const VcpuState&) const = default;
};

inline constexpr uint32_t kVcpuStateVersion = 1;

// The MSRs a VcpuState carries: those a guest may set that both backends
// implement, plus kvmclock's, which only KVM implements (a guest that turned
// kvmclock on cannot move to the software CPU, and its restore says so).
std::span<const uint32_t> saved_msr_indices();
bool is_kvmclock_msr(uint32_t index);

// A restore of `state` into vCPU `index`: fails (kInvalidArgument) with a
// message when the state is the boot processor's and the vCPU is not, or
// the other way round (states go back into the vCPU of the same index).
Result<void> check_vcpu_state_index(const VcpuState& state, unsigned index);

void encode_vcpu_state(StateWriter& out, const VcpuState& state);
// Refuses (kCorrupt) a truncated payload, trailing bytes, a value out of its
// range, an MSR not in saved_msr_indices(), and (kUnsupported) a version
// this build does not know.
Result<VcpuState> decode_vcpu_state(std::span<const uint8_t> payload, uint32_t version);

}  // namespace hostvisor
