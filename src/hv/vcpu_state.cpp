#include "hv/vcpu_state.h"

#include <algorithm>
#include <string>

#include "hv/hex.h"

namespace hostvisor {
namespace {

constexpr uint32_t kSavedMsrs[] = {
    0x174,       // IA32_SYSENTER_CS
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0x1a0,       // IA32_MISC_ENABLE
    0x277,       // IA32_PAT
    0x2ff,       // IA32_MTRR_DEF_TYPE
    0xc0000081,  // STAR
    0xc0000082,  // LSTAR
    0xc0000083,  // CSTAR
    0xc0000084,  // SFMASK
    0xc0000102,  // KERNEL_GS_BASE
    0xc0000103,  // TSC_AUX
    // kvmclock (KVM only): the new and the old MSR numbers of the system-time
    // and wall-clock areas.
    0x4b564d00,  // MSR_KVM_WALL_CLOCK_NEW
    0x4b564d01,  // MSR_KVM_SYSTEM_TIME_NEW
    0x11,        // MSR_KVM_WALL_CLOCK
    0x12,        // MSR_KVM_SYSTEM_TIME
};

constexpr uint64_t kApicBaseBsp = 1ull << 8;
// RFLAGS bits that exist (bit 1 always reads 1).
constexpr uint64_t kRflagsValidBits = 0x3f7fd7;
// The largest MSR list a state may carry: every saved MSR once.
constexpr size_t kMaxMsrs = std::size(kSavedMsrs);

void encode_segment(StateWriter& out, const Segment& s) {
  out.put(s.base);
  out.put(s.limit);
  out.put(s.selector);
  out.put(s.type);
  out.put(s.dpl);
  out.put_bool(s.present);
  out.put_bool(s.s);
  out.put_bool(s.db);
  out.put_bool(s.l);
  out.put_bool(s.g);
  out.put_bool(s.avl);
  out.put_bool(s.unusable);
}

Segment decode_segment(StateReader& in) {
  Segment s;
  s.base = in.get<uint64_t>();
  s.limit = in.get<uint32_t>();
  s.selector = in.get<uint16_t>();
  s.type = in.get<uint8_t>();
  s.dpl = in.get<uint8_t>();
  s.present = in.get_bool();
  s.s = in.get_bool();
  s.db = in.get_bool();
  s.l = in.get_bool();
  s.g = in.get_bool();
  s.avl = in.get_bool();
  s.unusable = in.get_bool();
  if (s.type > 0xf) in.fail("a segment's descriptor type is out of range 0-15");
  if (s.dpl > 3) in.fail("a segment's DPL is out of range 0-3");
  return s;
}

void encode_table(StateWriter& out, const DescriptorTable& t) {
  out.put(t.base);
  out.put(t.limit);
}

DescriptorTable decode_table(StateReader& in) {
  DescriptorTable t;
  t.base = in.get<uint64_t>();
  t.limit = in.get<uint16_t>();
  return t;
}

template <size_t N, size_t M>
void put_byte_rows(StateWriter& out, const std::array<std::array<uint8_t, M>, N>& rows) {
  for (const auto& row : rows) out.put_raw(row);
}

template <size_t N, size_t M>
void get_byte_rows(StateReader& in, std::array<std::array<uint8_t, M>, N>& rows) {
  for (auto& row : rows) in.get_raw(row);
}

}  // namespace

std::span<const uint32_t> saved_msr_indices() { return kSavedMsrs; }

bool is_kvmclock_msr(uint32_t index) {
  return index == 0x4b564d00 || index == 0x4b564d01 || index == 0x11 || index == 0x12;
}

Result<void> check_vcpu_state_index(const VcpuState& state, unsigned index) {
  const bool bsp = (state.lapic.apic_base & kApicBaseBsp) != 0;
  if (bsp == (index == 0)) return {};
  return Error(ErrorCode::kInvalidArgument, "vCPU " + std::to_string(index) + ": the state is that of " +
                                                (bsp ? "the boot processor" : "an application processor") +
                                                "; restore each vCPU's state into the vCPU of the same index");
}

void encode_vcpu_state(StateWriter& out, const VcpuState& s) {
  const Registers& r = s.regs;
  for (uint64_t v : {r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
                     r.r14, r.r15, r.rip, r.rflags}) {
    out.put(v);
  }

  const SystemRegisters& sr = s.sregs;
  for (const Segment* seg : {&sr.cs, &sr.ds, &sr.es, &sr.fs, &sr.gs, &sr.ss, &sr.tr, &sr.ldt})
    encode_segment(out, *seg);
  encode_table(out, sr.gdt);
  encode_table(out, sr.idt);
  for (uint64_t v : {sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.cr8, sr.efer, sr.apic_base}) out.put(v);

  const FpuState& f = s.fpu;
  out.put(f.fcw);
  out.put(f.fsw);
  out.put(f.ftw);
  out.put(f.fop);
  out.put(f.fip);
  out.put(f.fdp);
  out.put(f.fcs);
  out.put(f.fds);
  put_byte_rows(out, f.st);
  out.put(f.mxcsr);
  put_byte_rows(out, f.xmm);
  put_byte_rows(out, f.ymm_high);
  out.put(s.xcr0);

  out.put(s.tsc);
  out.put(s.tsc_khz);
  out.put(static_cast<uint32_t>(s.msrs.size()));
  for (const Msr& m : s.msrs) {
    out.put(m.index);
    out.put(m.value);
  }

  const PendingEvents& e = s.events;
  out.put_bool(e.exception_injected);
  out.put_bool(e.exception_pending);
  out.put(e.exception_vector);
  out.put_bool(e.exception_has_error);
  out.put(e.exception_error);
  out.put_bool(e.interrupt_injected);
  out.put(e.interrupt_vector);
  out.put_bool(e.interrupt_soft);
  out.put_bool(e.nmi_injected);
  out.put_bool(e.nmi_masked);
  out.put_bool(e.shadow_sti);
  out.put_bool(e.shadow_mov_ss);
  out.put_bool(s.halted);

  encode_local_apic_state(out, s.lapic);
}

Result<VcpuState> decode_vcpu_state(std::span<const uint8_t> payload, uint32_t version) {
  if (version != kVcpuStateVersion) {
    return Error(ErrorCode::kUnsupported, "vCPU state version " + std::to_string(version) +
                                              " is not known to this hostvisor (it reads version " +
                                              std::to_string(kVcpuStateVersion) + ")");
  }
  StateReader in(payload, "vCPU state");
  VcpuState s;
  Registers& r = s.regs;
  for (uint64_t* v : {&r.rax, &r.rbx, &r.rcx, &r.rdx, &r.rsi, &r.rdi, &r.rsp, &r.rbp, &r.r8, &r.r9, &r.r10, &r.r11,
                      &r.r12, &r.r13, &r.r14, &r.r15, &r.rip, &r.rflags}) {
    *v = in.get<uint64_t>();
  }
  if ((r.rflags & ~kRflagsValidBits) || !(r.rflags & 2)) in.fail("RFLAGS has reserved bits wrong");

  SystemRegisters& sr = s.sregs;
  for (Segment* seg : {&sr.cs, &sr.ds, &sr.es, &sr.fs, &sr.gs, &sr.ss, &sr.tr, &sr.ldt}) *seg = decode_segment(in);
  sr.gdt = decode_table(in);
  sr.idt = decode_table(in);
  for (uint64_t* v : {&sr.cr0, &sr.cr2, &sr.cr3, &sr.cr4, &sr.cr8, &sr.efer, &sr.apic_base}) *v = in.get<uint64_t>();
  if (sr.cr0 >> 32) in.fail("CR0 has bits set above bit 31");
  if (sr.cr8 > 0xf) in.fail("CR8 out of range 0-15");

  FpuState& f = s.fpu;
  f.fcw = in.get<uint16_t>();
  f.fsw = in.get<uint16_t>();
  f.ftw = in.get<uint8_t>();
  f.fop = in.get<uint16_t>();
  f.fip = in.get<uint64_t>();
  f.fdp = in.get<uint64_t>();
  f.fcs = in.get<uint16_t>();
  f.fds = in.get<uint16_t>();
  get_byte_rows(in, f.st);
  f.mxcsr = in.get<uint32_t>();
  get_byte_rows(in, f.xmm);
  get_byte_rows(in, f.ymm_high);
  s.xcr0 = in.get<uint64_t>();
  if (f.fop > 0x7ff) in.fail("the x87 opcode field is wider than 11 bits");
  if (f.mxcsr >> 16) in.fail("MXCSR has reserved bits set");
  if (!(s.xcr0 & 1)) in.fail("XCR0 without x87 state (bit 0) is invalid");
  if ((s.xcr0 & 4) && !(s.xcr0 & 2)) in.fail("XCR0 enables AVX without SSE");

  s.tsc = in.get<uint64_t>();
  s.tsc_khz = in.get<uint32_t>();
  const uint32_t msr_count = in.get<uint32_t>();
  if (msr_count > kMaxMsrs) {
    in.fail(std::to_string(msr_count) + " MSRs, more than the " + std::to_string(kMaxMsrs) + " a vCPU state holds");
  } else {
    for (uint32_t i = 0; i < msr_count && in.ok(); ++i) {
      Msr m;
      m.index = in.get<uint32_t>();
      m.value = in.get<uint64_t>();
      if (std::find(std::begin(kSavedMsrs), std::end(kSavedMsrs), m.index) == std::end(kSavedMsrs)) {
        in.fail("MSR " + hex(m.index) + " is not one a vCPU state carries");
      }
      s.msrs.push_back(m);
    }
  }

  PendingEvents& e = s.events;
  e.exception_injected = in.get_bool();
  e.exception_pending = in.get_bool();
  e.exception_vector = in.get<uint8_t>();
  e.exception_has_error = in.get_bool();
  e.exception_error = in.get<uint32_t>();
  e.interrupt_injected = in.get_bool();
  e.interrupt_vector = in.get<uint8_t>();
  e.interrupt_soft = in.get_bool();
  e.nmi_injected = in.get_bool();
  e.nmi_masked = in.get_bool();
  e.shadow_sti = in.get_bool();
  e.shadow_mov_ss = in.get_bool();
  s.halted = in.get_bool();
  if (e.exception_vector > 31) in.fail("a pending exception vector above 31");
  if (e.exception_injected && e.exception_pending) in.fail("an exception both injected and pending");

  s.lapic = decode_local_apic_state(in);
  HV_TRY(in.finish());
  return s;
}

}  // namespace hostvisor
