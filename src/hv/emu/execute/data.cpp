// Data movement and flag instructions: MOV MOVZX MOVSX(D) LEA XCHG CMPXCHG
// CMPXCHG8B XADD CMOVcc SETcc CBW/CWDE/CDQE CWD/CDQ/CQO LAHF SAHF CLC STC CMC
// CLD STD NOP XLAT and MOV to/from segment registers.
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/rmw.h"
#include "hv/emu/segments.h"

namespace hostvisor::emu {

void h_mov(Cpu& cpu, const Insn& insn) { write_op(cpu, insn, 0, read_op(cpu, insn, 1)); }

void h_movzx(Cpu& cpu, const Insn& insn) { set_reg(cpu, insn.op[0].reg, insn.op[0].size, read_op(cpu, insn, 1)); }

void h_movsx(Cpu& cpu, const Insn& insn) {
  const uint64_t v = static_cast<uint64_t>(sign_extend(read_op(cpu, insn, 1), insn.op[1].size));
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, v);
}

void h_lea(Cpu& cpu, const Insn& insn) { set_reg(cpu, insn.op[0].reg, insn.op[0].size, effective_address(cpu, insn)); }

void h_xchg(Cpu& cpu, const Insn& insn) {
  const Operand& a = insn.op[0];
  const Operand& b = insn.op[1];
  if (a.kind == OpKind::kReg && b.kind == OpKind::kReg) {
    const uint64_t va = get_reg(cpu, a.reg, a.size, a.high8);
    const uint64_t vb = get_reg(cpu, b.reg, b.size, b.high8);
    set_reg(cpu, a.reg, a.size, vb, a.high8);
    set_reg(cpu, b.reg, b.size, va, b.high8);
    return;
  }
  // XCHG with memory is always locked.
  Insn locked = insn;
  locked.prefixes |= kPrefixLock;
  const Operand& reg = a.kind == OpKind::kReg ? a : b;
  const uint64_t v = get_reg(cpu, reg.reg, reg.size, reg.high8);
  const uint64_t old =
      rmw_memory(cpu, locked, insn.mem.seg, effective_address(cpu, insn), reg.size, [v](uint64_t) { return v; });
  set_reg(cpu, reg.reg, reg.size, old, reg.high8);
}

void h_cmpxchg(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t acc = get_reg(cpu, 0, size);
  const uint64_t src = read_op(cpu, insn, 1);
  uint64_t old;
  if (insn.op[0].kind == OpKind::kReg) {
    // A register destination is written only on success (a failed 32-bit compare keeps its upper half).
    old = get_reg(cpu, insn.op[0].reg, size, insn.op[0].high8);
    if (old == acc) set_reg(cpu, insn.op[0].reg, size, src, insn.op[0].high8);
  } else {
    // A memory destination is written even when the compare fails (as hardware does).
    old = rmw(cpu, insn, [&](uint64_t x) { return (x & size_mask(size)) == acc ? src : x; }) & size_mask(size);
  }
  record_flags(cpu, FlagOp::kSub, size, acc - old, acc, old);
  if (old != acc) set_reg(cpu, 0, size, old);
}

void h_cmpxchg8b(Cpu& cpu, const Insn& insn) {
  if (insn.opsize == 8) raise(kUd);  // CMPXCHG16B: CX16 is not advertised
  const uint64_t expected = (get_reg(cpu, 2, 4) << 32) | get_reg(cpu, 0, 4);
  const uint64_t desired = (get_reg(cpu, 1, 4) << 32) | get_reg(cpu, 3, 4);
  const uint64_t old = rmw_memory(cpu, insn, insn.mem.seg, effective_address(cpu, insn), 8,
                                  [&](uint64_t x) { return x == expected ? desired : x; });
  if (old == expected) {
    update_flags(cpu, kFlagZf, kFlagZf);
  } else {
    set_reg(cpu, 0, 4, old & 0xffffffff);
    set_reg(cpu, 2, 4, old >> 32);
    update_flags(cpu, kFlagZf, 0);
  }
}

void h_xadd(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t src = get_reg(cpu, insn.op[1].reg, size, insn.op[1].high8);
  if (insn.op[0].kind == OpKind::kReg) {
    // The SDM's order: SRC = DEST, then DEST = the sum, so XADD of one
    // register with itself leaves the sum (twice the value), as hardware does.
    const uint64_t old = get_reg(cpu, insn.op[0].reg, size, insn.op[0].high8);
    set_reg(cpu, insn.op[1].reg, size, old, insn.op[1].high8);
    set_reg(cpu, insn.op[0].reg, size, old + src, insn.op[0].high8);
    record_flags(cpu, FlagOp::kAdd, size, old + src, old, src);
    return;
  }
  const uint64_t old = rmw(cpu, insn, [&](uint64_t x) { return x + src; });
  set_reg(cpu, insn.op[1].reg, size, old, insn.op[1].high8);
  record_flags(cpu, FlagOp::kAdd, size, old + src, old, src);
}

void h_cmovcc(Cpu& cpu, const Insn& insn) {
  const uint64_t v = read_op(cpu, insn, 1);  // the source is read (and may fault) either way
  const Operand& d = insn.op[0];
  if (condition(cpu, insn.cc)) {
    set_reg(cpu, d.reg, d.size, v);
  } else if (d.size == 4) {
    set_reg(cpu, d.reg, 4, get_reg(cpu, d.reg, 4));  // 32-bit destinations are zero-extended regardless
  }
}

void h_setcc(Cpu& cpu, const Insn& insn) { write_op(cpu, insn, 0, condition(cpu, insn.cc) ? 1 : 0); }

void h_cbw(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.opsize;
  set_reg(cpu, 0, size, static_cast<uint64_t>(sign_extend(get_reg(cpu, 0, size / 2), size / 2)));
}

void h_cwd(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.opsize;
  set_reg(cpu, 2, size, (get_reg(cpu, 0, size) & sign_bit(size)) ? ~0ull : 0);
}

void h_lahf(Cpu& cpu, const Insn&) { set_reg(cpu, 0, 1, (read_flags(cpu) & 0xd5) | 2, true); }

void h_sahf(Cpu& cpu, const Insn&) {
  update_flags(cpu, kFlagSf | kFlagZf | kFlagAf | kFlagPf | kFlagCf, get_reg(cpu, 0, 1, true));
}

void h_clc(Cpu& cpu, const Insn&) { update_flags(cpu, kFlagCf, 0); }
void h_stc(Cpu& cpu, const Insn&) { update_flags(cpu, kFlagCf, kFlagCf); }
void h_cmc(Cpu& cpu, const Insn&) { update_flags(cpu, kFlagCf, carry_flag(cpu) ? 0 : kFlagCf); }
void h_cld(Cpu& cpu, const Insn&) { cpu.rflags &= ~kFlagDf; }
void h_std(Cpu& cpu, const Insn&) { cpu.rflags |= kFlagDf; }
void h_nop(Cpu&, const Insn&) {}

void h_xlat(Cpu& cpu, const Insn& insn) {
  const uint64_t addr = (get_reg(cpu, 3, insn.addrsize) + get_reg(cpu, 0, 1)) & address_mask(insn.addrsize);
  set_reg(cpu, 0, 1, read_mem<uint8_t>(cpu, insn.mem.seg, addr));
}

void h_mov_to_sreg(Cpu& cpu, const Insn& insn) {
  const uint8_t seg = insn.op[0].reg;
  if (seg == kCs) raise(kUd);
  const uint16_t selector = static_cast<uint16_t>(read_op(cpu, insn, 1));
  load_segment(cpu, seg, selector);
  if (seg == kSs) cpu.interrupt_shadow = true;
}

void h_mov_from_sreg(Cpu& cpu, const Insn& insn) {
  const uint16_t selector = cpu.seg[insn.op[1].reg].selector;
  const Operand& d = insn.op[0];
  if (d.kind == OpKind::kReg) {
    set_reg(cpu, d.reg, d.size, selector);
  } else {
    write_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn), selector);
  }
}

}  // namespace hostvisor::emu
