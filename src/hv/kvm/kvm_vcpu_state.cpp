#include "hv/kvm/kvm_vcpu_state.h"

#include <algorithm>
#include <cstring>

namespace hostvisor::kvm {
namespace {

// xAPIC register offsets in the page (the neutral LVT order is the page's).
constexpr size_t kRegId = 0x20, kRegTpr = 0x80, kRegLdr = 0xd0, kRegDfr = 0xe0, kRegSvr = 0xf0, kRegIsr = 0x100,
                 kRegTmr = 0x180, kRegIrr = 0x200, kRegEsr = 0x280, kRegIcrLow = 0x300, kRegIcrHigh = 0x310,
                 kRegLvtTimer = 0x320, kRegTimerInitial = 0x380, kRegTimerCurrent = 0x390, kRegTimerDivide = 0x3e0;
constexpr uint32_t kLvtTimerModeMask = 3u << 17;
constexpr uint32_t kLvtTimerPeriodic = 1u << 17;
constexpr uint32_t kLvtTimerTscDeadline = 2u << 17;

uint32_t get32(const kvm_lapic_state& page, size_t offset) {
  uint32_t v;
  std::memcpy(&v, page.regs + offset, 4);
  return v;
}
void put32(kvm_lapic_state& page, size_t offset, uint32_t v) { std::memcpy(page.regs + offset, &v, 4); }

// The divide configuration register: bits 0, 1 and 3 encode 2^(n+1), 0b111 = 1.
uint64_t timer_divisor(uint32_t dcr) {
  const uint32_t n = (dcr & 3) | ((dcr >> 1) & 4);
  return n == 7 ? 1 : 2ull << n;
}

template <typename T>
T load(std::span<const uint8_t> bytes, size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof(T));
  return v;
}
template <typename T>
void store(std::span<uint8_t> bytes, size_t offset, T v) {
  std::memcpy(bytes.data() + offset, &v, sizeof(T));
}

// FXSAVE64 offsets.
constexpr size_t kFcw = 0, kFsw = 2, kFtw = 4, kFop = 6, kFip = 8, kFdp = 16, kMxcsr = 24, kSt = 32, kXmm = 160,
                 kXstateBv = 512;
constexpr uint64_t kXcr0Avx = 1ull << 2;

}  // namespace

LocalApicState lapic_from_kvm(const kvm_lapic_state& page, uint64_t apic_base) {
  LocalApicState s;
  s.apic_base = apic_base;
  s.id = get32(page, kRegId) >> 24;
  s.tpr = get32(page, kRegTpr) & 0xff;
  s.ldr = get32(page, kRegLdr);
  s.dfr = get32(page, kRegDfr);
  s.svr = get32(page, kRegSvr);
  s.esr = get32(page, kRegEsr);
  s.icr_low = get32(page, kRegIcrLow);
  s.icr_high = get32(page, kRegIcrHigh);
  for (unsigned i = 0; i < s.lvt.size(); ++i) s.lvt[i] = get32(page, kRegLvtTimer + 0x10 * i) & 0x7ffff;
  for (unsigned i = 0; i < 8; ++i) {
    s.isr[i] = get32(page, kRegIsr + 0x10 * i);
    s.tmr[i] = get32(page, kRegTmr + 0x10 * i);
    s.irr[i] = get32(page, kRegIrr + 0x10 * i);
  }
  s.timer_initial = get32(page, kRegTimerInitial);
  s.timer_divide = get32(page, kRegTimerDivide) & 0xb;
  const uint32_t mode = s.lvt[LocalApicState::kLvtTimer] & kLvtTimerModeMask;
  const uint32_t current = get32(page, kRegTimerCurrent);
  // A one-shot count that reached 0 has stopped; a periodic one reloads.
  if (mode != kLvtTimerTscDeadline && s.timer_initial != 0 && (current != 0 || mode == kLvtTimerPeriodic)) {
    s.timer_running = true;
    const uint64_t done_ticks = current == 0 ? s.timer_initial : s.timer_initial - std::min(current, s.timer_initial);
    s.timer_elapsed_ns = done_ticks * timer_divisor(s.timer_divide) * kKvmApicBusCycleNs;
  }
  return s;
}

void lapic_to_kvm(const LocalApicState& s, kvm_lapic_state& page) {
  // xAPIC and (without KVM_CAP_X2APIC_API) x2APIC pages both hold the id in bits 31:24.
  put32(page, kRegId, s.id << 24);
  put32(page, kRegTpr, s.tpr);
  put32(page, kRegLdr, s.ldr);
  put32(page, kRegDfr, s.dfr);
  put32(page, kRegSvr, s.svr);
  put32(page, kRegEsr, s.esr);
  put32(page, kRegIcrLow, s.icr_low);
  put32(page, kRegIcrHigh, s.icr_high);
  for (unsigned i = 0; i < s.lvt.size(); ++i) put32(page, kRegLvtTimer + 0x10 * i, s.lvt[i]);
  for (unsigned i = 0; i < 8; ++i) {
    put32(page, kRegIsr + 0x10 * i, s.isr[i]);
    put32(page, kRegTmr + 0x10 * i, s.tmr[i]);
    put32(page, kRegIrr + 0x10 * i, s.irr[i]);
  }
  put32(page, kRegTimerInitial, s.timer_initial);
  put32(page, kRegTimerDivide, s.timer_divide);
  uint32_t current = 0;
  const uint32_t mode = s.lvt[LocalApicState::kLvtTimer] & kLvtTimerModeMask;
  if (s.timer_running && s.timer_initial != 0 && mode != kLvtTimerTscDeadline) {
    const uint64_t ticks = s.timer_elapsed_ns / (timer_divisor(s.timer_divide) * kKvmApicBusCycleNs);
    if (mode == kLvtTimerPeriodic) {
      current = s.timer_initial - static_cast<uint32_t>(ticks % s.timer_initial);
    } else {
      // A count due already still fires: KVM starts no timer from a zero count.
      current = ticks >= s.timer_initial ? 1 : s.timer_initial - static_cast<uint32_t>(ticks);
    }
  }
  put32(page, kRegTimerCurrent, current);
}

FpuState fpu_from_xsave(std::span<const uint8_t> x) {
  FpuState f;
  f.fcw = load<uint16_t>(x, kFcw);
  f.fsw = load<uint16_t>(x, kFsw);
  f.ftw = load<uint8_t>(x, kFtw);
  f.fop = load<uint16_t>(x, kFop) & 0x7ff;
  f.fip = load<uint64_t>(x, kFip);
  f.fdp = load<uint64_t>(x, kFdp);
  f.mxcsr = load<uint32_t>(x, kMxcsr);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(f.st[i].data(), x.data() + kSt + 16 * i, 10);
  for (unsigned i = 0; i < 16; ++i) std::memcpy(f.xmm[i].data(), x.data() + kXmm + 16 * i, 16);
  // A component whose XSTATE_BV bit is clear is in its initial state (zero).
  if (load<uint64_t>(x, kXstateBv) & kXcr0Avx) {
    for (unsigned i = 0; i < 16; ++i) std::memcpy(f.ymm_high[i].data(), x.data() + kXsaveYmmOffset + 16 * i, 16);
  }
  return f;
}

void fpu_to_xsave(const FpuState& f, uint64_t xcr0, std::span<uint8_t> x) {
  std::fill(x.begin(), x.begin() + kXmm, 0);
  store<uint16_t>(x, kFcw, f.fcw);
  store<uint16_t>(x, kFsw, f.fsw);
  store<uint8_t>(x, kFtw, f.ftw);
  store<uint16_t>(x, kFop, f.fop);
  store<uint64_t>(x, kFip, f.fip);
  store<uint64_t>(x, kFdp, f.fdp);
  store<uint32_t>(x, kMxcsr, f.mxcsr);
  store<uint32_t>(x, kMxcsr + 4, 0xffff);  // MXCSR_MASK: ignored by XRSTOR, as the CPU reports it
  for (unsigned i = 0; i < 8; ++i) std::memcpy(x.data() + kSt + 16 * i, f.st[i].data(), 10);
  for (unsigned i = 0; i < 16; ++i) std::memcpy(x.data() + kXmm + 16 * i, f.xmm[i].data(), 16);
  uint64_t bv = load<uint64_t>(x, kXstateBv) | 0x3;  // x87 and SSE
  if (xcr0 & kXcr0Avx) {
    for (unsigned i = 0; i < 16; ++i) std::memcpy(x.data() + kXsaveYmmOffset + 16 * i, f.ymm_high[i].data(), 16);
    bv |= kXcr0Avx;
  } else {
    bv &= ~kXcr0Avx;
  }
  store<uint64_t>(x, kXstateBv, bv);
}

FpuState fpu_from_kvm(const kvm_fpu& k) {
  FpuState f;
  f.fcw = k.fcw;
  f.fsw = k.fsw;
  f.ftw = k.ftwx;
  f.fop = k.last_opcode & 0x7ff;
  f.fip = k.last_ip;
  f.fdp = k.last_dp;
  f.mxcsr = k.mxcsr;
  for (unsigned i = 0; i < 8; ++i) std::memcpy(f.st[i].data(), k.fpr[i], 10);
  for (unsigned i = 0; i < 16; ++i) std::memcpy(f.xmm[i].data(), k.xmm[i], 16);
  return f;
}

kvm_fpu fpu_to_kvm(const FpuState& f) {
  kvm_fpu k{};
  k.fcw = f.fcw;
  k.fsw = f.fsw;
  k.ftwx = f.ftw;
  k.last_opcode = f.fop;
  k.last_ip = f.fip;
  k.last_dp = f.fdp;
  k.mxcsr = f.mxcsr;
  for (unsigned i = 0; i < 8; ++i) std::memcpy(k.fpr[i], f.st[i].data(), 10);
  for (unsigned i = 0; i < 16; ++i) std::memcpy(k.xmm[i], f.xmm[i].data(), 16);
  return k;
}

PendingEvents events_from_kvm(const kvm_vcpu_events& k) {
  PendingEvents e;
  e.exception_injected = k.exception.injected;
  e.exception_pending = k.exception.pending && !k.exception.injected;
  e.exception_vector = k.exception.nr & 0x1f;
  e.exception_has_error = k.exception.has_error_code;
  e.exception_error = k.exception.error_code;
  e.interrupt_injected = k.interrupt.injected;
  e.interrupt_vector = k.interrupt.nr;
  e.interrupt_soft = k.interrupt.soft;
  e.nmi_injected = k.nmi.injected;
  e.nmi_masked = k.nmi.masked;
  e.shadow_sti = k.interrupt.shadow & KVM_X86_SHADOW_INT_STI;
  e.shadow_mov_ss = k.interrupt.shadow & KVM_X86_SHADOW_INT_MOV_SS;
  return e;
}

kvm_vcpu_events events_to_kvm(const PendingEvents& e, const LocalApicState& lapic) {
  kvm_vcpu_events k{};
  // Without KVM_CAP_EXCEPTION_PAYLOAD KVM knows only injected exceptions; a
  // pending one is raised again by the instruction, or delivered now.
  k.exception.injected = e.exception_injected || e.exception_pending;
  k.exception.nr = e.exception_vector;
  k.exception.has_error_code = e.exception_has_error;
  k.exception.error_code = e.exception_error;
  k.interrupt.injected = e.interrupt_injected;
  k.interrupt.nr = e.interrupt_vector;
  k.interrupt.soft = e.interrupt_soft;
  k.interrupt.shadow = (e.shadow_sti ? KVM_X86_SHADOW_INT_STI : 0) | (e.shadow_mov_ss ? KVM_X86_SHADOW_INT_MOV_SS : 0);
  k.nmi.injected = e.nmi_injected;
  k.nmi.pending = lapic.nmi_pending;
  k.nmi.masked = e.nmi_masked;
  k.sipi_vector = lapic.sipi_vector;
  k.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW;
  return k;
}

uint32_t mp_state_to_kvm(const VcpuState& s) {
  if (s.lapic.init_pending) return KVM_MP_STATE_INIT_RECEIVED;
  if (s.lapic.sipi_pending) return KVM_MP_STATE_SIPI_RECEIVED;
  if (s.lapic.waiting_for_sipi) return KVM_MP_STATE_UNINITIALIZED;
  if (s.halted) return KVM_MP_STATE_HALTED;
  return KVM_MP_STATE_RUNNABLE;
}

void mp_state_from_kvm(uint32_t mp_state, VcpuState& s) {
  s.halted = mp_state == KVM_MP_STATE_HALTED;
  s.lapic.init_pending = mp_state == KVM_MP_STATE_INIT_RECEIVED;
  s.lapic.sipi_pending = mp_state == KVM_MP_STATE_SIPI_RECEIVED;
  // An AP that got INIT waits for SIPI afterwards, as one never started does.
  s.lapic.waiting_for_sipi = mp_state == KVM_MP_STATE_UNINITIALIZED || mp_state == KVM_MP_STATE_INIT_RECEIVED ||
                             mp_state == KVM_MP_STATE_SIPI_RECEIVED;
}

}  // namespace hostvisor::kvm
