#include "hv/kvm/kvm_registers.h"

namespace hostvisor::kvm {

Registers from_kvm(const kvm_regs& r) {
  Registers out;
  out.rax = r.rax, out.rbx = r.rbx, out.rcx = r.rcx, out.rdx = r.rdx;
  out.rsi = r.rsi, out.rdi = r.rdi, out.rsp = r.rsp, out.rbp = r.rbp;
  out.r8 = r.r8, out.r9 = r.r9, out.r10 = r.r10, out.r11 = r.r11;
  out.r12 = r.r12, out.r13 = r.r13, out.r14 = r.r14, out.r15 = r.r15;
  out.rip = r.rip;
  out.rflags = r.rflags;
  return out;
}

kvm_regs to_kvm(const Registers& r) {
  kvm_regs out{};
  out.rax = r.rax, out.rbx = r.rbx, out.rcx = r.rcx, out.rdx = r.rdx;
  out.rsi = r.rsi, out.rdi = r.rdi, out.rsp = r.rsp, out.rbp = r.rbp;
  out.r8 = r.r8, out.r9 = r.r9, out.r10 = r.r10, out.r11 = r.r11;
  out.r12 = r.r12, out.r13 = r.r13, out.r14 = r.r14, out.r15 = r.r15;
  out.rip = r.rip;
  out.rflags = r.rflags;
  return out;
}

Segment from_kvm(const kvm_segment& s) {
  Segment out;
  out.base = s.base;
  out.limit = s.limit;
  out.selector = s.selector;
  out.type = s.type;
  out.dpl = s.dpl;
  out.present = s.present != 0;
  out.s = s.s != 0;
  out.db = s.db != 0;
  out.l = s.l != 0;
  out.g = s.g != 0;
  out.avl = s.avl != 0;
  out.unusable = s.unusable != 0;
  return out;
}

kvm_segment to_kvm(const Segment& s) {
  kvm_segment out{};
  out.base = s.base;
  out.limit = s.limit;
  out.selector = s.selector;
  out.type = s.type & 0xf;
  out.dpl = s.dpl & 0x3;
  out.present = s.present;
  out.s = s.s;
  out.db = s.db;
  out.l = s.l;
  out.g = s.g;
  out.avl = s.avl;
  out.unusable = s.unusable;
  return out;
}

SystemRegisters from_kvm(const kvm_sregs& s) {
  SystemRegisters out;
  out.cs = from_kvm(s.cs), out.ds = from_kvm(s.ds), out.es = from_kvm(s.es), out.fs = from_kvm(s.fs);
  out.gs = from_kvm(s.gs), out.ss = from_kvm(s.ss), out.tr = from_kvm(s.tr), out.ldt = from_kvm(s.ldt);
  out.gdt = {s.gdt.base, s.gdt.limit};
  out.idt = {s.idt.base, s.idt.limit};
  out.cr0 = s.cr0, out.cr2 = s.cr2, out.cr3 = s.cr3, out.cr4 = s.cr4, out.cr8 = s.cr8;
  out.efer = s.efer;
  out.apic_base = s.apic_base;
  return out;
}

void to_kvm(const SystemRegisters& s, kvm_sregs& out) {
  out.cs = to_kvm(s.cs), out.ds = to_kvm(s.ds), out.es = to_kvm(s.es), out.fs = to_kvm(s.fs);
  out.gs = to_kvm(s.gs), out.ss = to_kvm(s.ss), out.tr = to_kvm(s.tr), out.ldt = to_kvm(s.ldt);
  out.gdt = kvm_dtable{};
  out.gdt.base = s.gdt.base;
  out.gdt.limit = s.gdt.limit;
  out.idt = kvm_dtable{};
  out.idt.base = s.idt.base;
  out.idt.limit = s.idt.limit;
  out.cr0 = s.cr0, out.cr2 = s.cr2, out.cr3 = s.cr3, out.cr4 = s.cr4, out.cr8 = s.cr8;
  out.efer = s.efer;
  out.apic_base = s.apic_base;
}

}  // namespace hostvisor::kvm
