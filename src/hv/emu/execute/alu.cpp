// Integer arithmetic and logic: ADD OR ADC SBB AND SUB XOR CMP TEST INC DEC NEG NOT.
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/rmw.h"

namespace hostvisor::emu {

void h_add(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t b = read_op(cpu, insn, 1);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return x + b; });
  record_flags(cpu, FlagOp::kAdd, size, a + b, a, b);
}

void h_or(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t b = read_op(cpu, insn, 1);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return x | b; });
  record_flags(cpu, FlagOp::kLogic, size, a | b, 0, 0);
}

void h_adc(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t b = read_op(cpu, insn, 1);
  const uint8_t c = carry_flag(cpu);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return x + b + c; });
  record_flags(cpu, FlagOp::kAdc, size, a + b + c, a, b, c);
}

void h_sbb(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t b = read_op(cpu, insn, 1);
  const uint8_t c = carry_flag(cpu);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return x - b - c; });
  record_flags(cpu, FlagOp::kSbb, size, a - b - c, a, b, c);
}

void h_and(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t b = read_op(cpu, insn, 1);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return x & b; });
  record_flags(cpu, FlagOp::kLogic, size, a & b, 0, 0);
}

void h_sub(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t b = read_op(cpu, insn, 1);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return x - b; });
  record_flags(cpu, FlagOp::kSub, size, a - b, a, b);
}

void h_xor(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t b = read_op(cpu, insn, 1);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return x ^ b; });
  record_flags(cpu, FlagOp::kLogic, size, a ^ b, 0, 0);
}

void h_cmp(Cpu& cpu, const Insn& insn) {
  const uint64_t a = read_op(cpu, insn, 0);
  const uint64_t b = read_op(cpu, insn, 1);
  record_flags(cpu, FlagOp::kSub, insn.op[0].size, a - b, a, b);
}

void h_test(Cpu& cpu, const Insn& insn) {
  const uint64_t a = read_op(cpu, insn, 0);
  const uint64_t b = read_op(cpu, insn, 1);
  record_flags(cpu, FlagOp::kLogic, insn.op[0].size, a & b, 0, 0);
}

void h_inc(Cpu& cpu, const Insn& insn) {
  const uint8_t c = carry_flag(cpu);
  const uint64_t a = rmw(cpu, insn, [](uint64_t x) { return x + 1; });
  record_flags(cpu, FlagOp::kInc, insn.op[0].size, a + 1, a, 1, c);
}

void h_dec(Cpu& cpu, const Insn& insn) {
  const uint8_t c = carry_flag(cpu);
  const uint64_t a = rmw(cpu, insn, [](uint64_t x) { return x - 1; });
  record_flags(cpu, FlagOp::kDec, insn.op[0].size, a - 1, a, 1, c);
}

void h_neg(Cpu& cpu, const Insn& insn) {
  const uint64_t a = rmw(cpu, insn, [](uint64_t x) { return 0 - x; });
  record_flags(cpu, FlagOp::kSub, insn.op[0].size, 0 - a, 0, a);
}

void h_not(Cpu& cpu, const Insn& insn) {
  rmw(cpu, insn, [](uint64_t x) { return ~x; });
}

}  // namespace hostvisor::emu
