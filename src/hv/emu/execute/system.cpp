// System instructions: descriptor tables (LGDT LIDT SGDT SIDT LLDT SLDT LTR
// STR), control and debug registers, MSRs, CPUID, RDTSC(P), IN/OUT, CLI/STI,
// HLT, INVLPG, CLTS/LMSW/SMSW, SWAPGS, SYSCALL/SYSRET.
#include "hv/emu/cpuid.h"
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/io.h"
#include "hv/emu/execute/operands.h"
#include "hv/emu/msr.h"
#include "hv/emu/segments.h"

namespace hostvisor::emu {
namespace {

void require_cpl0(const Cpu& cpu) {
  if (cpu.cpl != 0) raise(kGp, 0);
}

bool protected_mode(const Cpu& cpu) { return cpu.cr0 & x86::kCr0Pe; }

void load_table(Cpu& cpu, const Insn& insn, DescriptorTable& table) {
  require_cpl0(cpu);
  const uint64_t ea = effective_address(cpu, insn);
  const uint16_t limit = read_mem<uint16_t>(cpu, insn.mem.seg, ea);
  uint64_t base;
  const uint64_t base_at = (ea + 2) & address_mask(insn.addrsize);
  if (cpu.mode64) {
    base = read_mem<uint64_t>(cpu, insn.mem.seg, base_at);
    if (!is_canonical(base)) raise(kGp, 0);
  } else {
    base = read_mem<uint32_t>(cpu, insn.mem.seg, base_at);
    if (insn.opsize == 2) base &= 0xffffff;
  }
  table.base = base;
  table.limit = limit;
}

void store_table(Cpu& cpu, const Insn& insn, const DescriptorTable& table) {
  const uint64_t ea = effective_address(cpu, insn);
  const unsigned base_size = cpu.mode64 ? 8 : 4;
  probe_write(cpu, insn.mem.seg, ea, 2 + base_size);
  write_mem<uint16_t>(cpu, insn.mem.seg, ea, table.limit);
  write_mem_n(cpu, insn.mem.seg, (ea + 2) & address_mask(insn.addrsize), base_size, table.base);
}

// Reads a system descriptor (LDT or TSS) from the GDT; 16 bytes in long mode.
Segment system_descriptor(Cpu& cpu, uint16_t selector, uint64_t* raw) {
  if (selector & 4) raise(kGp, selector & 0xfffc);  // must be in the GDT
  const uint64_t d = read_descriptor(cpu, selector);
  Segment s = segment_from_descriptor(d, selector);
  if (cpu.long_mode) s.base |= (read_descriptor_high(cpu, selector) & 0xffffffff) << 32;
  *raw = d;
  return s;
}

void write_cr0(Cpu& cpu, uint64_t value) {
  value |= x86::kCr0Et;
  if ((value >> 32) != 0) raise(kGp, 0);
  if ((value & x86::kCr0Pg) && !(value & x86::kCr0Pe)) raise(kGp, 0);
  // Enabling paging with EFER.LME set enters long mode (needs PAE); disabling it leaves.
  uint64_t efer = cpu.efer;
  if ((value & x86::kCr0Pg) && !(cpu.cr0 & x86::kCr0Pg) && (efer & x86::kEferLme)) {
    if (!(cpu.cr4 & x86::kCr4Pae)) raise(kGp, 0);
    efer |= x86::kEferLma;
  }
  if (!(value & x86::kCr0Pg) && (cpu.cr0 & x86::kCr0Pg) && cpu.long_mode) {
    if (cpu.mode64) raise(kGp, 0);  // paging can be turned off only from compatibility mode
    efer &= ~x86::kEferLma;
  }
  const uint64_t changed = cpu.cr0 ^ value;
  cpu.cr0 = value;
  cpu.efer = efer;
  if (changed & (x86::kCr0Pg | x86::kCr0Wp | x86::kCr0Pe)) tlb_flush(cpu);
  update_mode(cpu);
  cpu.stop_block = true;
}

constexpr uint64_t kCr4Vme = 1ull << 0, kCr4Pvi = 1ull << 1, kCr4Tsd = 1ull << 2, kCr4De = 1ull << 3,
                   kCr4Pse = 1ull << 4, kCr4Mce = 1ull << 6, kCr4Pce = 1ull << 8, kCr4Osfxsr = 1ull << 9,
                   kCr4Osxmmexcpt = 1ull << 10;

void write_cr4(Cpu& cpu, uint64_t value) {
  // Only what CPUID advertises may be set (no VME/PVI, no VMX, SMEP, SMAP, PCID, XSAVE, LA57).
  const uint64_t allowed =
      kCr4Tsd | kCr4De | kCr4Pse | x86::kCr4Pae | kCr4Mce | x86::kCr4Pge | kCr4Pce | kCr4Osfxsr | kCr4Osxmmexcpt;
  if (value & ~allowed) raise(kGp, 0);
  if (cpu.long_mode && !(value & x86::kCr4Pae)) raise(kGp, 0);
  const uint64_t changed = cpu.cr4 ^ value;
  cpu.cr4 = value;
  if (changed & (x86::kCr4Pae | x86::kCr4Pge | kCr4Pse)) tlb_flush(cpu);
  (void)kCr4Vme;
  (void)kCr4Pvi;
}

}  // namespace

void check_io_permission(Cpu& cpu, uint16_t port, unsigned size) {
  if (!protected_mode(cpu)) return;
  const unsigned iopl = (cpu.rflags >> 12) & 3;
  if (cpu.cpl <= iopl && !(cpu.rflags & kFlagVm)) return;
  // The I/O permission bitmap of a 32/64-bit TSS: every bit for the accessed ports must be clear.
  if ((cpu.tr.type & 0x9) != 0x9 || cpu.tr.limit < 0x67) raise(kGp, 0);
  const uint16_t map = read_linear<uint16_t>(cpu, cpu.tr.base + 0x66, false);
  const uint64_t byte = map + (port >> 3);
  if (byte + 1 > cpu.tr.limit) raise(kGp, 0);
  const uint16_t bits = read_linear<uint16_t>(cpu, cpu.tr.base + byte, false);
  const uint16_t mask = static_cast<uint16_t>(((1u << size) - 1) << (port & 7));
  if (bits & mask) raise(kGp, 0);
}

void h_lgdt(Cpu& cpu, const Insn& insn) { load_table(cpu, insn, cpu.gdt); }
void h_lidt(Cpu& cpu, const Insn& insn) { load_table(cpu, insn, cpu.idt); }
void h_sgdt(Cpu& cpu, const Insn& insn) { store_table(cpu, insn, cpu.gdt); }
void h_sidt(Cpu& cpu, const Insn& insn) { store_table(cpu, insn, cpu.idt); }

void h_lldt(Cpu& cpu, const Insn& insn) {
  if (!protected_mode(cpu)) raise(kUd);
  require_cpl0(cpu);
  const uint16_t selector = static_cast<uint16_t>(read_op(cpu, insn, 0));
  if ((selector & 0xfffc) == 0) {
    cpu.ldt = Segment{};
    cpu.ldt.selector = selector;
    cpu.ldt.unusable = true;
    cpu.ldt.present = false;
    cpu.ldt.s = false;
    cpu.ldt.type = 2;
    return;
  }
  uint64_t raw;
  Segment s = system_descriptor(cpu, selector, &raw);
  if (s.s || s.type != 2) raise(kGp, selector & 0xfffc);
  if (!s.present) raise(kNp, selector & 0xfffc);
  cpu.ldt = s;
}

void h_sldt(Cpu& cpu, const Insn& insn) {
  if (!protected_mode(cpu)) raise(kUd);
  write_op(cpu, insn, 0, cpu.ldt.selector);
}

void h_ltr(Cpu& cpu, const Insn& insn) {
  if (!protected_mode(cpu)) raise(kUd);
  require_cpl0(cpu);
  const uint16_t selector = static_cast<uint16_t>(read_op(cpu, insn, 0));
  if ((selector & 0xfffc) == 0) raise(kGp, 0);
  uint64_t raw;
  Segment s = system_descriptor(cpu, selector, &raw);
  const bool available = cpu.long_mode ? s.type == 9 : (s.type == 1 || s.type == 9);
  if (s.s || !available) raise(kGp, selector & 0xfffc);
  if (!s.present) raise(kNp, selector & 0xfffc);
  // Mark the descriptor busy.
  const uint64_t lin = cpu.gdt.base + (selector & 0xfff8) + 5;
  write_linear<uint8_t>(cpu, cpu.long_mode ? lin : lin & 0xffffffff, static_cast<uint8_t>((raw >> 40) | 2), false);
  s.type |= 2;
  cpu.tr = s;
}

void h_str(Cpu& cpu, const Insn& insn) {
  if (!protected_mode(cpu)) raise(kUd);
  write_op(cpu, insn, 0, cpu.tr.selector);
}

void h_mov_cr(Cpu& cpu, const Insn& insn) {
  require_cpl0(cpu);
  const bool to_cr = insn.op[0].kind == OpKind::kCr;
  const Operand& cr = to_cr ? insn.op[0] : insn.op[1];
  const Operand& gpr = to_cr ? insn.op[1] : insn.op[0];
  const unsigned size = cpu.mode64 ? 8 : 4;
  if (!to_cr) {
    uint64_t v;
    switch (cr.reg) {
      case 0: v = cpu.cr0; break;
      case 2: v = cpu.cr2; break;
      case 3: v = cpu.cr3; break;
      case 4: v = cpu.cr4; break;
      case 8: v = cpu.lapic ? cpu_cr8(cpu) : cpu.cr8; break;
      default: raise(kUd);
    }
    set_reg(cpu, gpr.reg, size, v);
    return;
  }
  const uint64_t v = get_reg(cpu, gpr.reg, size);
  switch (cr.reg) {
    case 0: write_cr0(cpu, v); break;
    case 2: cpu.cr2 = v; break;
    case 3:
      if (cpu.long_mode && (v >> 40) != 0) raise(kGp, 0);
      cpu.cr3 = v;
      tlb_flush_non_global(cpu);
      break;
    case 4: write_cr4(cpu, v); break;
    case 8:
      if (v > 15) raise(kGp, 0);
      set_cpu_cr8(cpu, v);
      break;
    default: raise(kUd);
  }
}

void h_mov_dr(Cpu& cpu, const Insn& insn) {
  require_cpl0(cpu);
  const bool to_dr = insn.op[0].kind == OpKind::kDr;
  const Operand& dr = to_dr ? insn.op[0] : insn.op[1];
  const Operand& gpr = to_dr ? insn.op[1] : insn.op[0];
  unsigned n = dr.reg;
  if (n == 4 || n == 5) {
    if (cpu.cr4 & kCr4De) raise(kUd);
    n += 2;
  }
  if (n > 7) raise(kUd);
  const unsigned size = cpu.mode64 ? 8 : 4;
  if (to_dr) {
    // Breakpoints are stored but not armed: the emulator does not implement hardware breakpoints.
    uint64_t v = get_reg(cpu, gpr.reg, size);
    if (n == 6) v = (v & 0xe00f) | 0xffff0ff0;
    if (n == 7) v = (v & 0xffff2bff) | 0x400;
    cpu.dr[n] = v;
  } else {
    set_reg(cpu, gpr.reg, size, cpu.dr[n]);
  }
}

void h_rdmsr(Cpu& cpu, const Insn&) {
  require_cpl0(cpu);
  const uint32_t index = static_cast<uint32_t>(cpu.gpr[1]);
  const auto v = read_msr(cpu, index);
  if (!v) raise(kGp, 0);
  set_reg(cpu, 0, 4, *v & 0xffffffff);
  set_reg(cpu, 2, 4, *v >> 32);
}

void h_wrmsr(Cpu& cpu, const Insn&) {
  require_cpl0(cpu);
  const uint32_t index = static_cast<uint32_t>(cpu.gpr[1]);
  const uint64_t v = (get_reg(cpu, 2, 4) << 32) | get_reg(cpu, 0, 4);
  if (!write_msr(cpu, index, v)) raise(kGp, 0);
  cpu.stop_block = true;
}

void h_cpuid(Cpu& cpu, const Insn&) {
  const CpuidResult r = cpuid(cpu, static_cast<uint32_t>(cpu.gpr[0]), static_cast<uint32_t>(cpu.gpr[1]));
  set_reg(cpu, 0, 4, r.eax);
  set_reg(cpu, 3, 4, r.ebx);
  set_reg(cpu, 1, 4, r.ecx);
  set_reg(cpu, 2, 4, r.edx);
}

void h_rdtsc(Cpu& cpu, const Insn&) {
  if ((cpu.cr4 & kCr4Tsd) && cpu.cpl != 0 && protected_mode(cpu)) raise(kGp, 0);
  const uint64_t tsc = guest_tsc(cpu);
  set_reg(cpu, 0, 4, tsc & 0xffffffff);
  set_reg(cpu, 2, 4, tsc >> 32);
}

void h_rdtscp(Cpu& cpu, const Insn& insn) {
  h_rdtsc(cpu, insn);
  set_reg(cpu, 1, 4, cpu.msr.tsc_aux & 0xffffffff);
}

void h_in(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint16_t port = insn.op[1].kind == OpKind::kImm ? static_cast<uint16_t>(insn.imm & 0xff)
                                                        : static_cast<uint16_t>(get_reg(cpu, 2, 2));
  check_io_permission(cpu, port, size);
  uint64_t value;
  if (port_read_or_exit(cpu, port, size, &value)) set_reg(cpu, 0, size, value);
}

void h_out(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[1].size;
  const uint16_t port = insn.op[0].kind == OpKind::kImm ? static_cast<uint16_t>(insn.imm & 0xff)
                                                        : static_cast<uint16_t>(get_reg(cpu, 2, 2));
  check_io_permission(cpu, port, size);
  port_write_or_exit(cpu, port, size, get_reg(cpu, 0, size));
}

void h_cli(Cpu& cpu, const Insn&) {
  if (protected_mode(cpu) && cpu.cpl > ((cpu.rflags >> 12) & 3)) raise(kGp, 0);
  cpu.rflags &= ~kFlagIf;
}

void h_sti(Cpu& cpu, const Insn&) {
  if (protected_mode(cpu) && cpu.cpl > ((cpu.rflags >> 12) & 3)) raise(kGp, 0);
  // The instruction after STI runs before any interrupt (so STI; HLT cannot miss a wake-up).
  if (!(cpu.rflags & kFlagIf)) cpu.interrupt_shadow = true;
  cpu.rflags |= kFlagIf;
}

void h_hlt(Cpu& cpu, const Insn&) {
  require_cpl0(cpu);
  cpu.halted = true;
}

void h_invlpg(Cpu& cpu, const Insn& insn) {
  require_cpl0(cpu);
  const uint64_t ea = effective_address(cpu, insn);
  uint64_t lin = ea + ((cpu.mode64 && insn.mem.seg != kFs && insn.mem.seg != kGs) ? 0 : cpu.seg[insn.mem.seg].base);
  if (!cpu.long_mode) lin &= 0xffffffff;
  tlb_invlpg(cpu, lin);
}

void h_clts(Cpu& cpu, const Insn&) {
  require_cpl0(cpu);
  cpu.cr0 &= ~(1ull << 3);
}

void h_lmsw(Cpu& cpu, const Insn& insn) {
  require_cpl0(cpu);
  const uint64_t v = read_op(cpu, insn, 0) & 0xf;
  // LMSW can set PE but never clear it.
  write_cr0(cpu, (cpu.cr0 & ~0xeull) | (v & 0xe) | (cpu.cr0 & 1) | (v & 1));
}

void h_smsw(Cpu& cpu, const Insn& insn) {
  if (insn.op[0].kind == OpKind::kReg) {
    set_reg(cpu, insn.op[0].reg, insn.op[0].size, cpu.cr0);
  } else {
    write_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn), static_cast<uint16_t>(cpu.cr0));
  }
}

void h_swapgs(Cpu& cpu, const Insn&) {
  if (!cpu.mode64) raise(kUd);
  require_cpl0(cpu);
  std::swap(cpu.seg[kGs].base, cpu.msr.kernel_gs_base);
}

void h_syscall(Cpu& cpu, const Insn&) {
  if (!cpu.long_mode || !(cpu.efer & x86::kEferSce)) raise(kUd);  // Intel: SYSCALL only in long mode
  const uint16_t sel = static_cast<uint16_t>(cpu.msr.star >> 32);
  cpu.gpr[1] = cpu.next_rip;
  cpu.gpr[11] = read_flags(cpu) & ~kFlagRf;
  Segment cs;
  cs.selector = sel & 0xfffc;
  cs.base = 0;
  cs.limit = 0xffffffff;
  cs.type = 0xb;
  cs.s = true;
  cs.dpl = 0;
  cs.present = true;
  cs.l = true;
  cs.db = false;
  cs.g = true;
  Segment ss = cs;
  ss.selector = static_cast<uint16_t>((sel + 8) & 0xfffc);
  ss.type = 0x3;
  ss.l = false;
  ss.db = true;
  cpu.seg[kSs] = ss;
  set_code_segment(cpu, cs, 0);
  write_flags(cpu, read_flags(cpu) & ~cpu.msr.sfmask & ~kFlagRf);
  cpu.next_rip = cpu.mode64 ? cpu.msr.lstar : cpu.msr.cstar;
}

void h_sysret(Cpu& cpu, const Insn& insn) {
  if (!(cpu.efer & x86::kEferSce)) raise(kUd);
  if (!cpu.mode64 || cpu.cpl != 0) raise(kGp, 0);
  const uint16_t sel = static_cast<uint16_t>(cpu.msr.star >> 48);
  const bool to64 = insn.opsize == 8;
  uint64_t rip = to64 ? cpu.gpr[1] : cpu.gpr[1] & 0xffffffff;
  if (to64 && !is_canonical(rip)) raise(kGp, 0);
  Segment cs;
  cs.selector = static_cast<uint16_t>((to64 ? sel + 16 : sel) | 3);
  cs.base = 0;
  cs.limit = 0xffffffff;
  cs.type = 0xb;
  cs.s = true;
  cs.dpl = 3;
  cs.present = true;
  cs.l = to64;
  cs.db = !to64;
  cs.g = true;
  Segment ss = cs;
  ss.selector = static_cast<uint16_t>((sel + 8) | 3);
  ss.type = 0x3;
  ss.l = false;
  ss.db = true;
  write_flags(cpu, (cpu.gpr[11] & 0x3c7fd7) | 2);
  cpu.seg[kSs] = ss;
  set_code_segment(cpu, cs, 3);
  cpu.next_rip = rip;
}

void h_ud(Cpu&, const Insn&) { raise(kUd); }

void h_privileged_nop(Cpu& cpu, const Insn&) { require_cpl0(cpu); }

}  // namespace hostvisor::emu
