// Specialised handlers for the hottest instruction forms, chosen once at
// decode time (fast_form()): ALU operations and MOV between 32/64-bit
// registers, immediates and memory, Jcc with its condition built in, and
// 64-bit mode's PUSH/POP of a register, CALL rel32 and RET.
// Each does exactly what the generic handler does for that form, without
// decoding the operand kinds and sizes again on every execution.
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/operands.h"

namespace hostvisor::emu {
namespace {

template <unsigned kSize>
using Word = std::conditional_t<kSize == 8, uint64_t, uint32_t>;

// The ALU operations with one flag recipe each, as the generic handlers record them.
enum class AluOp { kAdd, kOr, kAnd, kSub, kXor, kCmp, kTest };

template <AluOp kOp>
constexpr bool writes_result() {
  return kOp != AluOp::kCmp && kOp != AluOp::kTest;
}

template <AluOp kOp, unsigned kSize>
inline void alu(Cpu& cpu, uint8_t dest, uint64_t a, uint64_t b) {
  uint64_t r;
  FlagOp fop;
  switch (kOp) {
    case AluOp::kAdd: r = a + b, fop = FlagOp::kAdd; break;
    case AluOp::kSub:
    case AluOp::kCmp: r = a - b, fop = FlagOp::kSub; break;
    case AluOp::kOr: r = a | b, fop = FlagOp::kLogic; break;
    case AluOp::kAnd:
    case AluOp::kTest: r = a & b, fop = FlagOp::kLogic; break;
    case AluOp::kXor: r = a ^ b, fop = FlagOp::kLogic; break;
  }
  if (writes_result<kOp>()) cpu.gpr[dest] = static_cast<Word<kSize>>(r);  // 32-bit writes zero-extend
  if (fop == FlagOp::kLogic) {
    record_flags(cpu, fop, kSize, r, 0, 0);
  } else {
    record_flags(cpu, fop, kSize, r, a, b);
  }
}

// reg, reg
template <AluOp kOp, unsigned kSize>
void alu_rr(Cpu& cpu, const Insn& insn) {
  alu<kOp, kSize>(cpu, insn.op[0].reg, static_cast<Word<kSize>>(cpu.gpr[insn.op[0].reg]),
                  static_cast<Word<kSize>>(cpu.gpr[insn.op[1].reg]));
}

// reg, imm (the immediate is already sign-extended to 64 bits)
template <AluOp kOp, unsigned kSize>
void alu_ri(Cpu& cpu, const Insn& insn) {
  alu<kOp, kSize>(cpu, insn.op[0].reg, static_cast<Word<kSize>>(cpu.gpr[insn.op[0].reg]),
                  static_cast<Word<kSize>>(insn.imm));
}

// reg, mem (a load that may fault before anything is written)
template <AluOp kOp, unsigned kSize>
void alu_rm(Cpu& cpu, const Insn& insn) {
  const uint64_t b = read_mem<Word<kSize>>(cpu, insn.mem.seg, effective_address(cpu, insn));
  alu<kOp, kSize>(cpu, insn.op[0].reg, static_cast<Word<kSize>>(cpu.gpr[insn.op[0].reg]), b);
}

template <unsigned kSize>
void mov_rr(Cpu& cpu, const Insn& insn) {
  cpu.gpr[insn.op[0].reg] = static_cast<Word<kSize>>(cpu.gpr[insn.op[1].reg]);
}

template <unsigned kSize>
void mov_ri(Cpu& cpu, const Insn& insn) {
  cpu.gpr[insn.op[0].reg] = static_cast<Word<kSize>>(insn.imm);
}

template <unsigned kSize>
void mov_rm(Cpu& cpu, const Insn& insn) {
  cpu.gpr[insn.op[0].reg] = read_mem<Word<kSize>>(cpu, insn.mem.seg, effective_address(cpu, insn));
}

template <unsigned kSize>
void mov_mr(Cpu& cpu, const Insn& insn) {
  write_mem<Word<kSize>>(cpu, insn.mem.seg, effective_address(cpu, insn),
                         static_cast<Word<kSize>>(cpu.gpr[insn.op[1].reg]));
}

template <unsigned kSize>
void lea_r(Cpu& cpu, const Insn& insn) {
  cpu.gpr[insn.op[0].reg] = static_cast<Word<kSize>>(effective_address(cpu, insn));
}

template <unsigned kCc>
void jcc(Cpu& cpu, const Insn& insn) {
  if (condition(cpu, kCc)) branch_to(cpu, cpu.next_rip + insn.imm, insn.opsize);
}

constexpr Handler kJcc[16] = {jcc<0>, jcc<1>, jcc<2>,  jcc<3>,  jcc<4>,  jcc<5>,  jcc<6>,  jcc<7>,
                              jcc<8>, jcc<9>, jcc<10>, jcc<11>, jcc<12>, jcc<13>, jcc<14>, jcc<15>};

// 64-bit mode's stack is always 64 bits wide (no SS.B, no RSP wrap mask).
// Each form checks everything before it writes, like the generic one.
void push_r64(Cpu& cpu, const Insn& insn) {
  const uint64_t sp = cpu.gpr[4] - 8;
  write_mem<uint64_t>(cpu, kSs, sp, cpu.gpr[insn.op[0].reg]);
  cpu.gpr[4] = sp;
}

void pop_r64(Cpu& cpu, const Insn& insn) {
  const uint64_t v = read_mem<uint64_t>(cpu, kSs, cpu.gpr[4]);
  cpu.gpr[4] += 8;
  cpu.gpr[insn.op[0].reg] = v;  // after RSP: POP RSP loads the popped value
}

void call_rel64(Cpu& cpu, const Insn& insn) {
  const uint64_t ret = cpu.next_rip, target = ret + insn.imm;
  if (!is_canonical(target)) raise(kGp, 0);  // before the push, as branch_to() in h_call
  const uint64_t sp = cpu.gpr[4] - 8;
  write_mem<uint64_t>(cpu, kSs, sp, ret);
  cpu.gpr[4] = sp;
  cpu.next_rip = target;
}

void ret64(Cpu& cpu, const Insn&) {
  const uint64_t target = read_mem<uint64_t>(cpu, kSs, cpu.gpr[4]);
  if (!is_canonical(target)) raise(kGp, 0);
  cpu.gpr[4] += 8;
  cpu.next_rip = target;
}

bool full_gpr(const Operand& o) { return o.kind == OpKind::kReg && (o.size == 4 || o.size == 8) && !o.high8; }

template <AluOp kOp>
Handler alu_form(const Insn& insn) {
  const Operand& d = insn.op[0];
  const Operand& s = insn.op[1];
  if (insn.nops != 2 || !full_gpr(d) || (insn.prefixes & kPrefixLock)) return nullptr;
  const bool wide = d.size == 8;
  if (full_gpr(s) && s.size == d.size) return wide ? alu_rr<kOp, 8> : alu_rr<kOp, 4>;
  if (s.kind == OpKind::kImm) return wide ? alu_ri<kOp, 8> : alu_ri<kOp, 4>;
  if (s.kind == OpKind::kMem && s.size == d.size) return wide ? alu_rm<kOp, 8> : alu_rm<kOp, 4>;
  return nullptr;
}

Handler mov_form(const Insn& insn) {
  const Operand& d = insn.op[0];
  const Operand& s = insn.op[1];
  if (insn.nops != 2) return nullptr;
  if (full_gpr(d)) {
    const bool wide = d.size == 8;
    if (full_gpr(s) && s.size == d.size) return wide ? mov_rr<8> : mov_rr<4>;
    if (s.kind == OpKind::kImm) return wide ? mov_ri<8> : mov_ri<4>;
    if (s.kind == OpKind::kMem && s.size == d.size) return wide ? mov_rm<8> : mov_rm<4>;
  } else if (d.kind == OpKind::kMem && full_gpr(s) && s.size == d.size) {
    return s.size == 8 ? mov_mr<8> : mov_mr<4>;
  }
  return nullptr;
}

}  // namespace

Handler fast_form(const Insn& insn, unsigned code_size) {
  Handler fast = nullptr;
  if (code_size == 8 && insn.opsize == 8) {
    const Operand& o = insn.op[0];
    const bool reg64 = insn.nops == 1 && o.kind == OpKind::kReg && o.size == 8;
    if (insn.fn == h_push && reg64) fast = push_r64;
    if (insn.fn == h_pop && reg64) fast = pop_r64;
    if (insn.fn == h_call && insn.nops == 1 && o.kind == OpKind::kImm) fast = call_rel64;
    if (insn.fn == h_ret && insn.nops == 0) fast = ret64;
  }
  if (insn.fn == h_add) fast = alu_form<AluOp::kAdd>(insn);
  if (insn.fn == h_or) fast = alu_form<AluOp::kOr>(insn);
  if (insn.fn == h_and) fast = alu_form<AluOp::kAnd>(insn);
  if (insn.fn == h_sub) fast = alu_form<AluOp::kSub>(insn);
  if (insn.fn == h_xor) fast = alu_form<AluOp::kXor>(insn);
  if (insn.fn == h_cmp) fast = alu_form<AluOp::kCmp>(insn);
  if (insn.fn == h_test) fast = alu_form<AluOp::kTest>(insn);
  if (insn.fn == h_mov) fast = mov_form(insn);
  if (insn.fn == h_lea && insn.nops == 2 && full_gpr(insn.op[0])) {
    fast = insn.op[0].size == 8 ? lea_r<8> : lea_r<4>;
  }
  if (insn.fn == h_jcc && insn.op[0].kind == OpKind::kImm) fast = kJcc[insn.cc & 15];
  if (insn.fn == h_shl || insn.fn == h_shr || insn.fn == h_sar) fast = shift_fast_form(insn);
  return fast ? fast : insn.fn;
}

}  // namespace hostvisor::emu
