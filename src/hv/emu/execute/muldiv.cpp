// Multiplication and division: MUL IMUL DIV IDIV (widening through __int128).
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/operands.h"

namespace hostvisor::emu {
namespace {

using u128 = unsigned __int128;
using i128 = __int128;

// MUL/IMUL leave SF, ZF, AF, PF undefined; we set SF/ZF/PF from the low half.
void mul_flags(Cpu& cpu, uint64_t low, unsigned size, bool overflow) {
  uint64_t f = parity_flag(low);
  low &= size_mask(size);
  if (low == 0) f |= kFlagZf;
  if (low & sign_bit(size)) f |= kFlagSf;
  if (overflow) f |= kFlagCf | kFlagOf;
  set_arith_flags(cpu, f);
}

// The double-width accumulator (AX, DX:AX, EDX:EAX, RDX:RAX) as a 128-bit value.
u128 accumulator(const Cpu& cpu, unsigned size) {
  if (size == 1) return get_reg(cpu, 0, 2);
  return (static_cast<u128>(get_reg(cpu, 2, size)) << (size * 8)) | get_reg(cpu, 0, size);
}

void set_result(Cpu& cpu, unsigned size, uint64_t low, uint64_t high) {
  if (size == 1) {
    set_reg(cpu, 0, 2, (low & 0xff) | ((high & 0xff) << 8));
  } else {
    set_reg(cpu, 0, size, low);
    set_reg(cpu, 2, size, high);
  }
}

}  // namespace

void h_mul(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t src = read_op(cpu, insn, 0);
  const u128 product = static_cast<u128>(get_reg(cpu, 0, size)) * src;
  const uint64_t low = static_cast<uint64_t>(product) & size_mask(size);
  const uint64_t high = static_cast<uint64_t>(product >> (size * 8)) & size_mask(size);
  set_result(cpu, size, low, high);
  mul_flags(cpu, low, size, high != 0);
}

void h_imul(Cpu& cpu, const Insn& insn) {
  if (insn.nops == 1) {
    const unsigned size = insn.op[0].size;
    const int64_t src = sign_extend(read_op(cpu, insn, 0), size);
    const i128 product = static_cast<i128>(sign_extend(get_reg(cpu, 0, size), size)) * src;
    const uint64_t low = static_cast<uint64_t>(product) & size_mask(size);
    const uint64_t high = static_cast<uint64_t>(product >> (size * 8)) & size_mask(size);
    set_result(cpu, size, low, high);
    mul_flags(cpu, low, size, product != static_cast<i128>(sign_extend(low, size)));
    return;
  }
  const unsigned size = insn.op[0].size;
  const int64_t a = sign_extend(insn.nops == 3 ? read_op(cpu, insn, 1) : read_op(cpu, insn, 0), size);
  const int64_t b = sign_extend(insn.nops == 3 ? insn.imm : read_op(cpu, insn, 1), size);
  const i128 product = static_cast<i128>(a) * b;
  const uint64_t low = static_cast<uint64_t>(product) & size_mask(size);
  set_reg(cpu, insn.op[0].reg, size, low);
  mul_flags(cpu, low, size, product != static_cast<i128>(sign_extend(low, size)));
}

void h_div(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const uint64_t divisor = read_op(cpu, insn, 0);
  if (divisor == 0) raise(kDe);
  const u128 dividend = accumulator(cpu, size);
  const u128 quotient = dividend / divisor;
  if (quotient > size_mask(size)) raise(kDe);
  const uint64_t remainder = static_cast<uint64_t>(dividend % divisor);
  set_result(cpu, size, static_cast<uint64_t>(quotient), remainder);
}

void h_idiv(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const int64_t divisor = sign_extend(read_op(cpu, insn, 0), size);
  if (divisor == 0) raise(kDe);
  const unsigned bits = size * 8;
  u128 raw = accumulator(cpu, size);
  // Sign-extend the 2*size-byte dividend to 128 bits.
  i128 dividend =
      bits * 2 == 128 ? static_cast<i128>(raw) : static_cast<i128>(raw << (128 - 2 * bits)) >> (128 - 2 * bits);
  const i128 min128 = static_cast<i128>(static_cast<u128>(1) << 127);
  if (divisor == -1 && dividend == min128) raise(kDe);
  const i128 quotient = dividend / divisor;
  const i128 remainder = dividend % divisor;
  const i128 lo = -(static_cast<i128>(1) << (bits - 1));
  const i128 hi = (static_cast<i128>(1) << (bits - 1)) - 1;
  if (quotient < lo || quotient > hi) raise(kDe);
  set_result(cpu, size, static_cast<uint64_t>(quotient), static_cast<uint64_t>(remainder));
}

}  // namespace hostvisor::emu
