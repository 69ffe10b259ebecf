#include "hv/emu/interrupts.h"

#include "hv/emu/flags.h"
#include "hv/emu/mmu.h"
#include "hv/emu/platform/local_apic.h"
#include "hv/emu/segments.h"

namespace hostvisor::emu {
namespace {

// Writes `count` values of `size` bytes below `sp` on the stack at `ss_base`,
// probing every page first so a fault leaves memory and registers untouched.
uint64_t push_frame(Cpu& cpu, uint64_t ss_base, uint64_t sp, uint64_t sp_mask, unsigned size, const uint64_t* values,
                    unsigned count, bool user) {
  const bool wrap32 = !cpu.long_mode;
  auto lin = [&](uint64_t off) {
    uint64_t a = ss_base + (off & sp_mask);
    return wrap32 ? (a & 0xffffffff) : a;
  };
  uint64_t top = sp - static_cast<uint64_t>(size) * count;
  if (cpu.long_mode && (!is_canonical(lin(top)) || !is_canonical(lin(sp - 1)))) raise(kStackFault, 0);
  for (unsigned i = 0; i < count; ++i) {
    uint64_t a = lin(sp - static_cast<uint64_t>(size) * (i + 1));
    if (tlb_slot(cpu, a, Access::kWrite, user).tag != (a >> 12)) tlb_fill(cpu, a, Access::kWrite, user);
    uint64_t last = a + size - 1;
    if ((last >> 12) != (a >> 12)) tlb_fill(cpu, last, Access::kWrite, user);
  }
  for (unsigned i = 0; i < count; ++i) {
    write_linear_n(cpu, lin(sp - static_cast<uint64_t>(size) * (i + 1)), size, values[i], user);
  }
  return top & sp_mask;
}

void deliver_real(Cpu& cpu, uint8_t vector, uint64_t return_rip) {
  uint64_t entry = cpu.idt.base + vector * 4u;
  if (vector * 4u + 3 > cpu.idt.limit) raise(kGp, vector * 8u + 2);
  uint32_t vec = read_linear<uint32_t>(cpu, entry & 0xffffffff, false);
  const uint64_t values[3] = {read_flags(cpu) & 0xffff, cpu.seg[kCs].selector, return_rip & 0xffff};
  const uint64_t mask = cpu.stack_size == 4 ? 0xffffffff : 0xffff;
  uint64_t sp = push_frame(cpu, cpu.seg[kSs].base, cpu.gpr[4], mask, 2, values, 3, false);
  cpu.gpr[4] = (cpu.gpr[4] & ~mask) | sp;
  cpu.rflags &= ~(kFlagIf | kFlagTf | kFlagAc | kFlagRf);
  cpu.seg[kCs].selector = static_cast<uint16_t>(vec >> 16);
  cpu.seg[kCs].base = (vec >> 16) << 4;
  cpu.rip = vec & 0xffff;
  cpu.stop_block = true;
}

void deliver_protected(Cpu& cpu, uint8_t vector, EventKind kind, bool has_error, uint32_t error, uint64_t return_rip) {
  const bool lm = cpu.long_mode;
  const unsigned entry_size = lm ? 16 : 8;
  const uint32_t ext = (kind == EventKind::kException || kind == EventKind::kExternal) ? 1 : 0;
  const uint32_t idt_error = vector * 8u + 2 + ext;
  if (vector * entry_size + entry_size - 1 > cpu.idt.limit) raise(kGp, idt_error);
  uint64_t entry_lin = cpu.idt.base + vector * entry_size;
  if (!lm) entry_lin &= 0xffffffff;
  uint64_t lo = read_linear<uint64_t>(cpu, entry_lin, false);
  uint64_t hi = lm ? read_linear<uint64_t>(cpu, entry_lin + 8, false) : 0;
  const unsigned type = (lo >> 40) & 0xf;
  const unsigned gate_dpl = (lo >> 45) & 3;
  const bool present = (lo >> 47) & 1;
  const bool gate32 = type == 0xe || type == 0xf;
  const bool gate16 = !lm && (type == 0x6 || type == 0x7);
  if (type == 0x5 && !lm) throw EmulationFailure{"task gates in the IDT are not supported"};
  if (!gate32 && !gate16) raise(kGp, idt_error);
  if ((kind == EventKind::kSoftware || kind == EventKind::kSoftwareException) && gate_dpl < cpu.cpl) {
    raise(kGp, vector * 8u + 2);
  }
  if (!present) raise(kNp, idt_error);
  const bool trap_gate = type & 1;
  const uint16_t cs_sel = static_cast<uint16_t>(lo >> 16);
  uint64_t target = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ull);
  if (lm) target |= (hi & 0xffffffffull) << 32;
  const unsigned ist = lm ? (lo >> 32) & 7 : 0;

  if ((cs_sel & 0xfffc) == 0) raise(kGp, ext);
  uint64_t cs_desc = read_descriptor(cpu, cs_sel);
  Segment cs = segment_from_descriptor(cs_desc, cs_sel);
  if (!cs.s || !(cs.type & 8) || cs.dpl > cpu.cpl) raise(kGp, (cs_sel & 0xfffc) | ext);
  if (!cs.present) raise(kNp, (cs_sel & 0xfffc) | ext);
  if (lm && (!cs.l || cs.db)) raise(kGp, (cs_sel & 0xfffc) | ext);
  const bool conforming = cs.type & 4;
  const unsigned new_cpl = conforming ? cpu.cpl : cs.dpl;
  const bool privilege_change = new_cpl < cpu.cpl;
  if (cpu.rflags & kFlagVm) throw EmulationFailure{"virtual-8086 mode is not supported"};

  const uint64_t old_flags = read_flags(cpu);
  const uint64_t old_cs = cpu.seg[kCs].selector;
  const uint64_t old_ss = cpu.seg[kSs].selector;
  const uint64_t old_sp = cpu.gpr[4];

  Segment new_ss = cpu.seg[kSs];
  uint64_t sp = cpu.gpr[4];
  uint64_t sp_mask = lm ? ~0ull : (cpu.stack_size == 4 ? 0xffffffffull : 0xffff);
  if (lm) {
    if (privilege_change || ist) {
      uint64_t tss_off = ist ? 0x24 + (ist - 1) * 8 : 4 + new_cpl * 8;
      if (tss_off + 7 > cpu.tr.limit) raise(kTs, cpu.tr.selector & 0xfffc);
      sp = read_linear<uint64_t>(cpu, cpu.tr.base + tss_off, false);
    }
    if (privilege_change) {
      new_ss = Segment{};
      new_ss.selector = static_cast<uint16_t>(new_cpl);
      new_ss.unusable = true;
      new_ss.present = false;
      new_ss.dpl = static_cast<uint8_t>(new_cpl);
      new_ss.limit = 0;
    }
    sp &= ~0xfull;
  } else if (privilege_change) {
    const bool tss32 = (cpu.tr.type & 8) != 0;
    uint64_t off = tss32 ? 4 + new_cpl * 8 : 2 + new_cpl * 4;
    uint64_t need = tss32 ? off + 5 : off + 3;
    if (need > cpu.tr.limit) raise(kTs, cpu.tr.selector & 0xfffc);
    uint64_t base = cpu.tr.base + off;
    uint64_t new_sp = tss32 ? read_linear<uint32_t>(cpu, base & 0xffffffff, false)
                            : read_linear<uint16_t>(cpu, base & 0xffffffff, false);
    uint16_t ss_sel = read_linear<uint16_t>(cpu, (base + (tss32 ? 4 : 2)) & 0xffffffff, false);
    uint8_t saved_cpl = cpu.cpl;
    cpu.cpl = static_cast<uint8_t>(new_cpl);  // SS is checked against the new privilege
    try {
      new_ss = check_stack_segment(cpu, ss_sel, new_cpl, kTs);
    } catch (...) {
      cpu.cpl = saved_cpl;
      throw;
    }
    cpu.cpl = saved_cpl;
    sp = new_sp;
    sp_mask = new_ss.db ? 0xffffffffull : 0xffff;
  }

  uint64_t values[6];
  unsigned n = 0;
  if (lm || privilege_change) {
    values[n++] = old_ss;
    values[n++] = old_sp;
  }
  values[n++] = old_flags;
  values[n++] = old_cs;
  values[n++] = return_rip;
  if (has_error) values[n++] = error;
  const unsigned size = lm ? 8 : (gate32 ? 4 : 2);
  const uint64_t ss_base = lm ? 0 : new_ss.base;
  sp = push_frame(cpu, ss_base, sp, sp_mask, size, values, n, new_cpl == 3);

  // Commit: nothing below can fault.
  if (privilege_change || lm) cpu.seg[kSs] = new_ss;
  cpu.gpr[4] = lm ? sp : ((cpu.gpr[4] & ~sp_mask) | sp);
  if (privilege_change && !lm) cpu.gpr[4] = sp;  // the new SP replaces the whole register
  cs.type |= 1;
  uint64_t new_rip = gate16 ? target & 0xffff : target;
  uint64_t fl = old_flags & ~(kFlagTf | kFlagNt | kFlagRf | kFlagVm);
  if (!trap_gate) fl &= ~kFlagIf;
  write_flags(cpu, fl);
  set_code_segment(cpu, cs, new_cpl);
  cpu.rip = new_rip;
}

bool is_contributory(uint8_t v) { return v == kDe || (v >= kTs && v <= kGp); }

}  // namespace

bool deliver_event(Cpu& cpu, uint8_t vector, EventKind kind, bool has_error, uint32_t error, uint64_t return_rip) {
  uint8_t first = vector;
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      if (cpu.cr0 & x86::kCr0Pe) {
        deliver_protected(cpu, vector, kind, has_error, error, return_rip);
      } else {
        deliver_real(cpu, vector, return_rip);
      }
      cpu.interrupt_shadow = false;
      cpu.halted = false;
      return true;
    } catch (const GuestFault& second) {
      if (vector == kDf) return false;  // fault while delivering #DF: shutdown
      const bool df = (is_contributory(first) && is_contributory(second.vector)) ||
                      (first == kPf && (second.vector == kPf || is_contributory(second.vector)));
      if (df) {
        vector = kDf;
        has_error = true;
        error = 0;
      } else {
        vector = second.vector;
        has_error = second.has_error;
        error = second.error;
      }
      first = vector;
      kind = EventKind::kException;
      return_rip = cpu.rip;
    }
  }
  return false;
}

bool event_deliverable(const Cpu& cpu) {
  const LocalApic* apic = cpu.lapic;
  if (!apic || cpu.interrupt_shadow) return false;
  return apic->has_init() || (!cpu.nmi_blocked && apic->has_nmi()) || ((cpu.rflags & kFlagIf) && apic->has_interrupt());
}

void do_iret(Cpu& cpu, unsigned opsize) {
  cpu.nmi_blocked = false;
  const uint64_t mask = size_mask(cpu.stack_size);
  auto lin_at = [&](unsigned i) { return (cpu.gpr[4] + i * opsize) & mask; };
  if (!(cpu.cr0 & x86::kCr0Pe)) {
    uint64_t ip = read_mem_n(cpu, kSs, lin_at(0), opsize);
    uint64_t cs = read_mem_n(cpu, kSs, lin_at(1), opsize) & 0xffff;
    uint64_t fl = read_mem_n(cpu, kSs, lin_at(2), opsize);
    if (ip > cpu.seg[kCs].limit) raise(kGp, 0);
    cpu.gpr[4] = (cpu.gpr[4] & ~mask) | ((cpu.gpr[4] + 3 * opsize) & mask);
    if (opsize == 2) fl = (read_flags(cpu) & ~0xffffull) | fl;
    write_flags(cpu, (fl & ~(kFlagVm)) | (read_flags(cpu) & kFlagVm));
    cpu.seg[kCs].selector = static_cast<uint16_t>(cs);
    cpu.seg[kCs].base = cs << 4;
    cpu.next_rip = ip;
    cpu.stop_block = true;
    return;
  }
  if (cpu.rflags & kFlagVm) throw EmulationFailure{"IRET in virtual-8086 mode is not supported"};
  if (cpu.rflags & kFlagNt) {
    if (cpu.long_mode) raise(kGp, 0);
    throw EmulationFailure{"IRET task return (EFLAGS.NT) is not supported"};
  }
  uint64_t ip = read_mem_n(cpu, kSs, lin_at(0), opsize);
  uint16_t cs_sel = static_cast<uint16_t>(read_mem_n(cpu, kSs, lin_at(1), opsize));
  uint64_t fl = read_mem_n(cpu, kSs, lin_at(2), opsize);
  if (opsize == 2) fl = (read_flags(cpu) & ~0xffffull) | fl;
  if ((fl & kFlagVm) && !cpu.long_mode && cpu.cpl == 0) throw EmulationFailure{"virtual-8086 mode is not supported"};
  const unsigned rpl = cs_sel & 3;
  const bool outer = rpl > cpu.cpl;
  const bool pop_stack = outer || cpu.mode64;
  uint64_t new_sp = 0;
  uint16_t ss_sel = 0;
  if (pop_stack) {
    new_sp = read_mem_n(cpu, kSs, lin_at(3), opsize);
    ss_sel = static_cast<uint16_t>(read_mem_n(cpu, kSs, lin_at(4), opsize));
  }
  Segment cs = check_code_segment(cpu, cs_sel, true);
  Segment ss = cpu.seg[kSs];
  if (pop_stack) {
    uint8_t saved = cpu.cpl;
    const bool was64 = cpu.mode64;
    cpu.cpl = static_cast<uint8_t>(rpl);
    // A null SS is allowed only when returning to 64-bit code at CPL < 3.
    cpu.mode64 = cpu.long_mode && cs.l;
    try {
      ss = check_stack_segment(cpu, ss_sel, rpl, kGp);
    } catch (...) {
      cpu.cpl = saved;
      cpu.mode64 = was64;
      throw;
    }
    cpu.cpl = saved;
    cpu.mode64 = was64;
  }
  const bool target64 = cpu.long_mode && cs.l;
  if (target64 ? !is_canonical(ip) : ip > cs.limit) raise(kGp, 0);

  // Commit. Which flags IRET may change depends on the privilege it runs at.
  uint64_t changeable = kFlagCf | kFlagPf | kFlagAf | kFlagZf | kFlagSf | kFlagTf | kFlagDf | kFlagOf | kFlagNt |
                        kFlagRf | kFlagAc | kFlagId | (1ull << 19) | (1ull << 20);
  const unsigned iopl = (cpu.rflags >> 12) & 3;
  if (cpu.cpl == 0) changeable |= kFlagIopl;
  if (cpu.cpl <= iopl) changeable |= kFlagIf;
  uint64_t cur = read_flags(cpu);
  write_flags(cpu, (cur & ~changeable) | (fl & changeable));
  if (pop_stack) {
    cpu.seg[kSs] = ss;
    cpu.gpr[4] = new_sp;
  } else {
    cpu.gpr[4] = (cpu.gpr[4] & ~mask) | ((cpu.gpr[4] + 3 * opsize) & mask);
  }
  set_code_segment(cpu, cs, outer ? rpl : cpu.cpl);
  if (!cpu.mode64) {
    // Legacy-mode SS decides how much of ESP the new value replaces.
    if (pop_stack && !ss.db) cpu.gpr[4] = (cpu.gpr[4] & ~0xffffull) | (new_sp & 0xffff);
    ip &= 0xffffffff;
  }
  if (outer) null_inaccessible_segments(cpu);
  cpu.next_rip = ip;
}

}  // namespace hostvisor::emu
