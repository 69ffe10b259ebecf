// Stack and control flow: PUSH POP PUSHF POPF PUSHA POPA CALL RET JMP Jcc
// JCXZ LOOPcc ENTER LEAVE, far JMP/CALL/RET, INT n/INT3/INTO/INT1, IRET.
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/operands.h"
#include "hv/emu/interrupts.h"
#include "hv/emu/segments.h"

namespace hostvisor::emu {
namespace {

// The stack operand size of PUSH/POP/CALL/RET (64-bit mode defaults to 8).
unsigned stack_opsize(const Insn& insn) { return insn.opsize; }

uint64_t relative_target(const Cpu& cpu, const Insn& insn) { return cpu.next_rip + insn.imm; }

uint64_t near_target(Cpu& cpu, const Insn& insn) {
  return insn.op[0].kind == OpKind::kImm ? relative_target(cpu, insn) : read_op(cpu, insn, 0);
}

bool protected_mode(const Cpu& cpu) { return (cpu.cr0 & x86::kCr0Pe) && !(cpu.rflags & kFlagVm); }

// Real-mode far transfer: CS base follows the selector.
void real_mode_far(Cpu& cpu, uint16_t selector, uint64_t offset) {
  cpu.seg[kCs].selector = selector;
  cpu.seg[kCs].base = static_cast<uint64_t>(selector) << 4;
  cpu.next_rip = offset;
  cpu.stop_block = true;
}

// The selector:offset operand of a far JMP/CALL (immediate pointer or memory m16:16/32/64).
void far_operand(Cpu& cpu, const Insn& insn, uint16_t* selector, uint64_t* offset) {
  if (insn.op[0].kind == OpKind::kImm) {
    *offset = insn.imm;
    *selector = static_cast<uint16_t>(insn.imm2);
    return;
  }
  const unsigned size = insn.opsize;
  const uint64_t ea = effective_address(cpu, insn);
  *offset = read_mem_n(cpu, insn.mem.seg, ea, size);
  *selector = read_mem<uint16_t>(cpu, insn.mem.seg, (ea + size) & address_mask(insn.addrsize));
}

void check_far_offset(const Cpu& cpu, const Segment& cs, uint64_t offset) {
  if (cpu.long_mode && cs.l) {
    if (!is_canonical(offset)) raise(kGp, 0);
  } else if (offset > cs.limit) {
    raise(kGp, 0);
  }
}

}  // namespace

void h_push(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  uint64_t v;
  if (insn.op[0].kind == OpKind::kSreg) {
    v = cpu.seg[insn.op[0].reg].selector;
  } else if (insn.op[0].kind == OpKind::kImm) {
    v = insn.imm;
  } else {
    v = read_op(cpu, insn, 0);
  }
  push(cpu, size, v);
}

void h_pop(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  const Operand& d = insn.op[0];
  const uint64_t v = stack_peek(cpu, size, 0);
  if (d.kind == OpKind::kSreg) {
    load_segment(cpu, d.reg, static_cast<uint16_t>(v));
    set_rsp_offset(cpu, size);
    if (d.reg == kSs) cpu.interrupt_shadow = true;
  } else if (d.kind == OpKind::kReg) {
    set_rsp_offset(cpu, size);
    set_reg(cpu, d.reg, size, v);
  } else {
    // A memory destination is addressed with RSP already incremented.
    const uint64_t saved = cpu.gpr[4];
    set_rsp_offset(cpu, size);
    try {
      write_op(cpu, insn, 0, v);
    } catch (...) {
      cpu.gpr[4] = saved;
      throw;
    }
  }
}

void h_pushf(Cpu& cpu, const Insn& insn) {
  if ((cpu.rflags & kFlagVm) && ((cpu.rflags >> 12) & 3) != 3) raise(kGp, 0);
  push(cpu, stack_opsize(insn), read_flags(cpu) & ~(kFlagVm | kFlagRf));
}

void h_popf(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  if ((cpu.rflags & kFlagVm) && ((cpu.rflags >> 12) & 3) != 3) raise(kGp, 0);
  uint64_t v = stack_peek(cpu, size, 0);
  const uint64_t cur = read_flags(cpu);
  uint64_t changeable = kArithFlags | kFlagTf | kFlagDf | kFlagNt | kFlagAc | kFlagId;
  const unsigned iopl = (cur >> 12) & 3;
  if (cpu.cpl == 0) changeable |= kFlagIopl;
  if (cpu.cpl <= iopl) changeable |= kFlagIf;
  if (size == 2) changeable &= 0xffff;
  set_rsp_offset(cpu, size);
  write_flags(cpu, (cur & ~changeable) | (v & changeable));
}

void h_pusha(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  const uint64_t mask = stack_mask(cpu);
  const uint64_t sp = cpu.gpr[4];
  // Probe the whole frame first so a fault changes nothing.
  probe_write(cpu, kSs, (sp - 8 * size) & mask, size);
  probe_write(cpu, kSs, (sp - size) & mask, size);
  for (int i = 0; i < 8; ++i) {
    const uint64_t v = i == 4 ? sp : cpu.gpr[i];
    write_mem_n(cpu, kSs, (sp - (i + 1) * size) & mask, size, v);
  }
  cpu.gpr[4] = (sp & ~mask) | ((sp - 8 * size) & mask);
}

void h_popa(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  uint64_t v[8];
  for (int i = 0; i < 8; ++i) v[i] = stack_peek(cpu, size, (7 - i) * size);
  for (int i = 0; i < 8; ++i) {
    if (i != 4) set_reg(cpu, static_cast<uint8_t>(i), size, v[i]);
  }
  set_rsp_offset(cpu, 8 * size);
}

void h_call(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  const uint64_t target = near_target(cpu, insn);
  const uint64_t ret = cpu.next_rip;
  branch_to(cpu, target, size);  // validates the target before anything is pushed
  try {
    push(cpu, size, ret);
  } catch (...) {
    cpu.next_rip = ret;
    throw;
  }
}

void h_ret(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  const uint64_t target = stack_peek(cpu, size, 0);
  branch_to(cpu, target, size);
  set_rsp_offset(cpu, size + (insn.nops ? (insn.imm & 0xffff) : 0));
}

void h_jmp(Cpu& cpu, const Insn& insn) { branch_to(cpu, near_target(cpu, insn), insn.opsize); }

void h_jcc(Cpu& cpu, const Insn& insn) {
  if (condition(cpu, insn.cc)) branch_to(cpu, relative_target(cpu, insn), insn.opsize);
}

void h_jcxz(Cpu& cpu, const Insn& insn) {
  if (get_reg(cpu, 1, insn.addrsize) == 0) branch_to(cpu, relative_target(cpu, insn), insn.opsize);
}

void h_loop(Cpu& cpu, const Insn& insn) {
  const uint64_t count = (get_reg(cpu, 1, insn.addrsize) - 1) & address_mask(insn.addrsize);
  bool take = count != 0;
  if (insn.cc == 0) take = take && !(read_flags(cpu) & kFlagZf);  // LOOPNE (E0)
  if (insn.cc == 1) take = take && (read_flags(cpu) & kFlagZf);   // LOOPE (E1)
  if (take) branch_to(cpu, relative_target(cpu, insn), insn.opsize);
  set_reg(cpu, 1, insn.addrsize, count);
}

void h_enter(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  const uint64_t frame_size = insn.imm & 0xffff;
  const unsigned level = insn.imm2 & 0x1f;
  const uint64_t mask = stack_mask(cpu);
  uint64_t sp = cpu.gpr[4];
  uint64_t bp = cpu.gpr[5];
  // Probe the lowest and highest slot written.
  probe_write(cpu, kSs, (sp - size * (level + 1)) & mask, size);
  probe_write(cpu, kSs, (sp - size) & mask, size);
  sp = (sp - size) & mask;
  write_mem_n(cpu, kSs, sp, size, bp);
  const uint64_t frame = sp;
  if (level > 0) {
    for (unsigned i = 1; i < level; ++i) {
      bp = (bp - size) & size_mask(cpu.stack_size);
      const uint64_t v = read_mem_n(cpu, kSs, bp, size);
      sp = (sp - size) & mask;
      write_mem_n(cpu, kSs, sp, size, v);
    }
    sp = (sp - size) & mask;
    write_mem_n(cpu, kSs, sp, size, frame);
  }
  sp = (sp - frame_size) & mask;
  set_reg(cpu, 5, size, frame);
  cpu.gpr[4] = (cpu.gpr[4] & ~mask) | sp;
}

void h_leave(Cpu& cpu, const Insn& insn) {
  const unsigned size = stack_opsize(insn);
  const uint64_t mask = stack_mask(cpu);
  const uint64_t bp = cpu.gpr[5] & mask;
  const uint64_t v = read_mem_n(cpu, kSs, bp, size);
  cpu.gpr[4] = (cpu.gpr[4] & ~mask) | ((bp + size) & mask);
  set_reg(cpu, 5, size, v);
}

void h_jmp_far(Cpu& cpu, const Insn& insn) {
  uint16_t selector;
  uint64_t offset;
  far_operand(cpu, insn, &selector, &offset);
  if (!protected_mode(cpu)) return real_mode_far(cpu, selector, offset & size_mask(insn.opsize));
  Segment cs = check_code_segment(cpu, selector, false);
  check_far_offset(cpu, cs, offset);
  set_code_segment(cpu, cs, cpu.cpl);
  cpu.next_rip = offset;
}

void h_call_far(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.opsize;
  uint16_t selector;
  uint64_t offset;
  far_operand(cpu, insn, &selector, &offset);
  const uint64_t mask = stack_mask(cpu);
  const uint64_t sp = cpu.gpr[4];
  probe_write(cpu, kSs, (sp - 2 * size) & mask, size);
  probe_write(cpu, kSs, (sp - size) & mask, size);
  Segment cs = cpu.seg[kCs];
  if (protected_mode(cpu)) {
    cs = check_code_segment(cpu, selector, false);
    check_far_offset(cpu, cs, offset);
  }
  write_mem_n(cpu, kSs, (sp - size) & mask, size, cpu.seg[kCs].selector);
  write_mem_n(cpu, kSs, (sp - 2 * size) & mask, size, cpu.next_rip);
  cpu.gpr[4] = (sp & ~mask) | ((sp - 2 * size) & mask);
  if (!protected_mode(cpu)) return real_mode_far(cpu, selector, offset & size_mask(size));
  set_code_segment(cpu, cs, cpu.cpl);
  cpu.next_rip = offset;
}

void h_ret_far(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.opsize;
  const uint64_t extra = insn.nops ? (insn.imm & 0xffff) : 0;
  const uint64_t offset = stack_peek(cpu, size, 0);
  const uint16_t selector = static_cast<uint16_t>(stack_peek(cpu, size, size));
  if (!protected_mode(cpu)) {
    set_rsp_offset(cpu, 2 * size + extra);
    return real_mode_far(cpu, selector, offset & size_mask(size));
  }
  Segment cs = check_code_segment(cpu, selector, true);
  const unsigned rpl = selector & 3;
  if (rpl > cpu.cpl) {
    // Return to an outer privilege level: the caller's SS:SP follow.
    const uint64_t new_sp = stack_peek(cpu, size, 2 * size + extra);
    const uint16_t ss_sel = static_cast<uint16_t>(stack_peek(cpu, size, 3 * size + extra));
    const uint8_t saved = cpu.cpl;
    cpu.cpl = static_cast<uint8_t>(rpl);
    Segment ss;
    try {
      ss = check_stack_segment(cpu, ss_sel, rpl, kGp);
    } catch (...) {
      cpu.cpl = saved;
      throw;
    }
    cpu.cpl = saved;
    check_far_offset(cpu, cs, offset);
    cpu.seg[kSs] = ss;
    set_code_segment(cpu, cs, rpl);
    cpu.gpr[4] = new_sp + extra;
    if (!cpu.mode64 && !ss.db) cpu.gpr[4] &= 0xffff;
    null_inaccessible_segments(cpu);
  } else {
    check_far_offset(cpu, cs, offset);
    set_rsp_offset(cpu, 2 * size + extra);
    set_code_segment(cpu, cs, cpu.cpl);
  }
  cpu.next_rip = offset;
}

namespace {
void software_interrupt(Cpu& cpu, uint8_t vector, EventKind kind) {
  if (!deliver_event(cpu, vector, kind, false, 0, cpu.next_rip)) throw ShutdownRequest{};
  cpu.next_rip = cpu.rip;
}
}  // namespace

void h_int(Cpu& cpu, const Insn& insn) {
  if ((cpu.rflags & kFlagVm) && ((cpu.rflags >> 12) & 3) != 3) raise(kGp, 0);
  software_interrupt(cpu, static_cast<uint8_t>(insn.imm), EventKind::kSoftware);
}

void h_int3(Cpu& cpu, const Insn&) { software_interrupt(cpu, kBp, EventKind::kSoftwareException); }

void h_into(Cpu& cpu, const Insn&) {
  if (cpu.mode64) raise(kUd);
  if (read_flags(cpu) & kFlagOf) software_interrupt(cpu, kOf, EventKind::kSoftwareException);
}

void h_int1(Cpu& cpu, const Insn&) { software_interrupt(cpu, kDb, EventKind::kIcebp); }

void h_iret(Cpu& cpu, const Insn& insn) {
  do_iret(cpu, insn.opsize);
  cpu.stop_block = true;
}

}  // namespace hostvisor::emu
