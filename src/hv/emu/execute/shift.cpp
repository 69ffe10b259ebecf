// Shifts and rotates: SHL SHR SAR ROL ROR RCL RCR SHLD SHRD. Flags are
// computed eagerly (their rules depend on the count).
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/rmw.h"

namespace hostvisor::emu {
namespace {

unsigned shift_count(Cpu& cpu, const Insn& insn, int index) {
  uint64_t c = insn.op[index].kind == OpKind::kReg ? get_reg(cpu, insn.op[index].reg, 1) : insn.imm;
  return static_cast<unsigned>(c & (insn.op[0].size == 8 ? 0x3f : 0x1f));
}

uint64_t result_flags(uint64_t res, unsigned size) {
  res &= size_mask(size);
  uint64_t f = parity_flag(res);
  if (res == 0) f |= kFlagZf;
  if (res & sign_bit(size)) f |= kFlagSf;
  return f;
}

// Count 0 changes nothing, except that a 32-bit register destination is still zero-extended.
void zero_count(Cpu& cpu, const Insn& insn) {
  const Operand& o = insn.op[0];
  if (o.kind == OpKind::kReg && o.size == 4) set_reg(cpu, o.reg, 4, get_reg(cpu, o.reg, 4));
}

enum class Shift { kShl, kShr, kSar };

// The result of shifting `a` (masked to `size`) by a nonzero `count`.
template <Shift kind>
uint64_t shifted(uint64_t a, unsigned count, unsigned size) {
  const uint64_t mask = size_mask(size);
  a &= mask;
  if constexpr (kind == Shift::kShl) return count >= 64 ? 0 : (a << count) & mask;
  if constexpr (kind == Shift::kShr) return count >= 64 ? 0 : a >> count;
  int64_t s = sign_extend(a, size);
  return static_cast<uint64_t>(s >> (count > 63 ? 63 : count)) & mask;
}

// The flags of shifting `a` (masked) by a nonzero `count` to `res`.
template <Shift kind>
uint64_t shift_flags(uint64_t a, uint64_t res, unsigned count, unsigned size) {
  const unsigned bits = size * 8;
  uint64_t f = result_flags(res, size);
  bool cf;
  if constexpr (kind == Shift::kShl) {
    cf = count <= bits ? (a >> (bits - count)) & 1 : 0;
    if (((res & sign_bit(size)) != 0) != cf) f |= kFlagOf;
  } else if constexpr (kind == Shift::kShr) {
    cf = count <= bits ? (a >> (count - 1)) & 1 : 0;
    if (a & sign_bit(size)) f |= kFlagOf;
  } else {
    int64_t s = sign_extend(a, size);
    cf = (s >> (count - 1 > 63 ? 63 : count - 1)) & 1;
  }
  if (cf) f |= kFlagCf;
  return f;
}

template <Shift kind>
void shift(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size;
  const unsigned count = insn.nops > 1 ? shift_count(cpu, insn, 1) : 1;
  if (count == 0) {
    zero_count(cpu, insn);
    return;
  }
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return shifted<kind>(x, count, size); }) & size_mask(size);
  set_arith_flags(cpu, shift_flags<kind>(a, shifted<kind>(a, count, size), count, size));
}

// A 32/64-bit register shifted by an immediate that is nonzero after masking
// (chosen at decode time, see shift_fast_form()).
template <Shift kind, unsigned kSize>
void shift_reg_imm(Cpu& cpu, const Insn& insn) {
  const unsigned count = static_cast<unsigned>(insn.imm & (kSize == 8 ? 0x3f : 0x1f));
  uint64_t& r = cpu.gpr[insn.op[0].reg];
  const uint64_t a = kSize == 8 ? r : static_cast<uint32_t>(r);
  const uint64_t res = shifted<kind>(a, count, kSize);
  r = res;
  set_arith_flags(cpu, shift_flags<kind>(a, res, count, kSize));
}

uint64_t rotl(uint64_t v, unsigned n, unsigned bits) {
  n %= bits;
  if (n == 0) return v;
  return ((v << n) | (v >> (bits - n))) & size_mask(bits / 8);
}

}  // namespace

void h_shl(Cpu& cpu, const Insn& insn) { shift<Shift::kShl>(cpu, insn); }
void h_shr(Cpu& cpu, const Insn& insn) { shift<Shift::kShr>(cpu, insn); }
void h_sar(Cpu& cpu, const Insn& insn) { shift<Shift::kSar>(cpu, insn); }

Handler shift_fast_form(const Insn& insn) {
  const Operand& d = insn.op[0];
  if (insn.nops != 2 || d.kind != OpKind::kReg || d.high8 || (d.size != 4 && d.size != 8)) return nullptr;
  if (insn.op[1].kind != OpKind::kImm || (insn.imm & (d.size == 8 ? 0x3f : 0x1f)) == 0) return nullptr;
  const bool wide = d.size == 8;
  if (insn.fn == h_shl) return wide ? shift_reg_imm<Shift::kShl, 8> : shift_reg_imm<Shift::kShl, 4>;
  if (insn.fn == h_shr) return wide ? shift_reg_imm<Shift::kShr, 8> : shift_reg_imm<Shift::kShr, 4>;
  if (insn.fn == h_sar) return wide ? shift_reg_imm<Shift::kSar, 8> : shift_reg_imm<Shift::kSar, 4>;
  return nullptr;
}

void h_rol(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size, bits = size * 8;
  const unsigned count = insn.nops > 1 ? shift_count(cpu, insn, 1) : 1;
  if (count == 0) return zero_count(cpu, insn);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return rotl(x & size_mask(size), count, bits); });
  const uint64_t res = rotl(a & size_mask(size), count, bits);
  const bool cf = res & 1;
  const bool of = ((res >> (bits - 1)) & 1) ^ cf;
  update_flags(cpu, kFlagCf | kFlagOf, (cf ? kFlagCf : 0) | (of ? kFlagOf : 0));
}

void h_ror(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size, bits = size * 8;
  const unsigned count = insn.nops > 1 ? shift_count(cpu, insn, 1) : 1;
  if (count == 0) return zero_count(cpu, insn);
  const unsigned left = bits - (count % bits);
  const uint64_t a = rmw(cpu, insn, [&](uint64_t x) { return rotl(x & size_mask(size), left, bits); });
  const uint64_t res = rotl(a & size_mask(size), left, bits);
  const bool cf = (res >> (bits - 1)) & 1;
  const bool of = cf ^ ((res >> (bits - 2)) & 1);
  update_flags(cpu, kFlagCf | kFlagOf, (cf ? kFlagCf : 0) | (of ? kFlagOf : 0));
}

namespace {
// Rotate through carry, one bit at a time (counts are at most 63).
template <bool kLeft>
void rotate_carry(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size, bits = size * 8;
  unsigned count = insn.nops > 1 ? shift_count(cpu, insn, 1) : 1;
  if (size == 1) count %= 9;
  if (size == 2) count %= 17;
  if (count == 0) return zero_count(cpu, insn);
  const bool cf_in = carry_flag(cpu);
  const uint64_t mask = size_mask(size);
  bool cf_out = cf_in;
  auto compute = [&](uint64_t x) {
    uint64_t v = x & mask;
    bool c = cf_in;
    for (unsigned i = 0; i < count; ++i) {
      if (kLeft) {
        bool out = (v >> (bits - 1)) & 1;
        v = ((v << 1) | c) & mask;
        c = out;
      } else {
        bool out = v & 1;
        v = (v >> 1) | (static_cast<uint64_t>(c) << (bits - 1));
        c = out;
      }
    }
    cf_out = c;
    return v;
  };
  const uint64_t a = rmw(cpu, insn, compute) & mask;
  const uint64_t res = compute(a);
  bool of;
  if (kLeft) {
    of = ((res >> (bits - 1)) & 1) ^ cf_out;
  } else {
    of = ((res >> (bits - 1)) & 1) ^ ((res >> (bits - 2)) & 1);
  }
  update_flags(cpu, kFlagCf | kFlagOf, (cf_out ? kFlagCf : 0) | (of ? kFlagOf : 0));
}
}  // namespace

void h_rcl(Cpu& cpu, const Insn& insn) { rotate_carry<true>(cpu, insn); }
void h_rcr(Cpu& cpu, const Insn& insn) { rotate_carry<false>(cpu, insn); }

namespace {
template <bool kLeft>
void double_shift(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size, bits = size * 8;
  const unsigned count = shift_count(cpu, insn, 2);
  if (count == 0) return zero_count(cpu, insn);
  const uint64_t mask = size_mask(size);
  const uint64_t b = get_reg(cpu, insn.op[1].reg, size);
  // 16-bit counts above 16 shift through a 32-bit (dest:src:dest) pattern, as Intel CPUs do.
  auto compute = [&](uint64_t x) -> uint64_t {
    x &= mask;
    if (size == 2) {
      if (kLeft) return (((x << 32) | (b << 16) | x) << count >> 32) & mask;
      return ((x | (b << 16) | (x << 32)) >> count) & mask;
    }
    if (kLeft) return ((x << count) | (b >> (bits - count))) & mask;
    return ((x >> count) | (b << (bits - count))) & mask;
  };
  const uint64_t a = rmw(cpu, insn, compute) & mask;
  const uint64_t res = compute(a);
  uint64_t f = result_flags(res, size);
  bool cf;
  if (kLeft) {
    cf = count <= bits ? (a >> (bits - count)) & 1 : (b >> (2 * bits - count)) & 1;
  } else {
    cf = count <= bits ? (a >> (count - 1)) & 1 : (b >> (count - 1 - bits)) & 1;
  }
  if (cf) f |= kFlagCf;
  if (((res ^ a) >> (bits - 1)) & 1) f |= kFlagOf;
  set_arith_flags(cpu, f);
}
}  // namespace

void h_shld(Cpu& cpu, const Insn& insn) { double_shift<true>(cpu, insn); }
void h_shrd(Cpu& cpu, const Insn& insn) { double_shift<false>(cpu, insn); }

}  // namespace hostvisor::emu
