#include "hv/kvm/kvm_registers.h"

#include <cstddef>

namespace hostvisor::kvm {
namespace {

// KVM's structs name the registers as the neutral ones do, so one copy
// serves both directions.
template <class To, class From>
To copy_general_registers(const From& r) {
  To out{};
  out.rax = r.rax, out.rbx = r.rbx, out.rcx = r.rcx, out.rdx = r.rdx;
  out.rsi = r.rsi, out.rdi = r.rdi, out.rsp = r.rsp, out.rbp = r.rbp;
  out.r8 = r.r8, out.r9 = r.r9, out.r10 = r.r10, out.r11 = r.r11;
  out.r12 = r.r12, out.r13 = r.r13, out.r14 = r.r14, out.r15 = r.r15;
  out.rip = r.rip;
  out.rflags = r.rflags;
  return out;
}

// One segment register; the type and DPL are masked to their widths in
// the descriptor.
template <class To, class From>
To copy_segment(const From& s) {
  To out{};
  out.base = s.base;
  out.limit = s.limit;
  out.selector = s.selector;
  out.type = static_cast<decltype(out.type)>(s.type & 0xf);
  out.dpl = static_cast<decltype(out.dpl)>(s.dpl & 0x3);
  out.present = s.present;
  out.s = s.s;
  out.db = s.db;
  out.l = s.l;
  out.g = s.g;
  out.avl = s.avl;
  out.unusable = s.unusable;
  return out;
}

// The segment registers (each through `convert`), TR, LDT and the control registers.
template <class To, class From, class Convert>
void copy_system_registers(const From& s, To& out, Convert convert) {
  const auto from = segment_registers(s);
  const auto to = segment_registers(out);
  for (std::size_t i = 0; i < from.size(); ++i) *to[i] = convert(*from[i]);
  out.tr = convert(s.tr);
  out.ldt = convert(s.ldt);
  copy_control_registers(s, out);
  out.cr8 = s.cr8;
}

}  // namespace

Registers from_kvm(const kvm_regs& r) { return copy_general_registers<Registers>(r); }

kvm_regs to_kvm(const Registers& r) { return copy_general_registers<kvm_regs>(r); }

Segment from_kvm(const kvm_segment& s) { return copy_segment<Segment>(s); }

kvm_segment to_kvm(const Segment& s) { return copy_segment<kvm_segment>(s); }

SystemRegisters from_kvm(const kvm_sregs& s) {
  SystemRegisters out;
  copy_system_registers(s, out, [](const kvm_segment& segment) { return from_kvm(segment); });
  out.gdt = {s.gdt.base, s.gdt.limit};
  out.idt = {s.idt.base, s.idt.limit};
  return out;
}

void to_kvm(const SystemRegisters& s, kvm_sregs& out) {
  copy_system_registers(s, out, [](const Segment& segment) { return to_kvm(segment); });
  out.gdt = kvm_dtable{};
  out.gdt.base = s.gdt.base;
  out.gdt.limit = s.gdt.limit;
  out.idt = kvm_dtable{};
  out.idt.base = s.idt.base;
  out.idt.limit = s.idt.limit;
}

}  // namespace hostvisor::kvm
