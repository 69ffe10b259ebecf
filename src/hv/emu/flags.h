// Lazy arithmetic flags: recording an operation is a few stores; the flags
// are computed only when read (Jcc, SETcc, PUSHF, ADC...).
#pragma once

#include <cstdint>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

inline uint64_t size_mask(unsigned size) { return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1; }
inline uint64_t sign_bit(unsigned size) { return 1ull << (size * 8 - 1); }
inline int64_t sign_extend(uint64_t v, unsigned size) {
  switch (size) {
    case 1: return static_cast<int8_t>(v);
    case 2: return static_cast<int16_t>(v);
    case 4: return static_cast<int32_t>(v);
    default: return static_cast<int64_t>(v);
  }
}

inline uint64_t parity_flag(uint64_t res) {
  return (__builtin_parity(static_cast<unsigned>(res & 0xff)) ? 0 : kFlagPf);
}

// Computes CF, PF, AF, ZF, SF, OF of the recorded operation.
inline uint64_t compute_arith_flags(const LazyFlags& f) {
  const uint64_t mask = size_mask(f.size);
  const uint64_t msb = sign_bit(f.size);
  const uint64_t res = f.res & mask, a = f.a & mask, b = f.b & mask;
  uint64_t out = parity_flag(res);
  if (res == 0) out |= kFlagZf;
  if (res & msb) out |= kFlagSf;
  switch (f.op) {
    case FlagOp::kAdd:
    case FlagOp::kAdc:
      if (f.op == FlagOp::kAdc && f.carry ? res <= a : res < a) out |= kFlagCf;
      if ((a ^ res) & (b ^ res) & msb) out |= kFlagOf;
      out |= (a ^ b ^ res) & kFlagAf;
      break;
    case FlagOp::kSub:
    case FlagOp::kSbb:
      if (f.op == FlagOp::kSbb && f.carry ? a <= b : a < b) out |= kFlagCf;
      if ((a ^ b) & (a ^ res) & msb) out |= kFlagOf;
      out |= (a ^ b ^ res) & kFlagAf;
      break;
    case FlagOp::kLogic: break;
    case FlagOp::kInc:
      if (f.carry) out |= kFlagCf;
      if (res == msb) out |= kFlagOf;
      out |= (a ^ 1 ^ res) & kFlagAf;
      break;
    case FlagOp::kDec:
      if (f.carry) out |= kFlagCf;
      if (res == msb - 1) out |= kFlagOf;
      out |= (a ^ 1 ^ res) & kFlagAf;
      break;
    case FlagOp::kNone: break;
  }
  return out;
}

// The full RFLAGS value.
inline uint64_t read_flags(const Cpu& cpu) {
  if (cpu.flags.op == FlagOp::kNone) return cpu.rflags;
  return (cpu.rflags & ~kArithFlags) | compute_arith_flags(cpu.flags);
}

// Makes the arithmetic flags explicit in cpu.rflags (before a partial update).
inline void materialize_flags(Cpu& cpu) {
  if (cpu.flags.op != FlagOp::kNone) {
    cpu.rflags = (cpu.rflags & ~kArithFlags) | compute_arith_flags(cpu.flags);
    cpu.flags.op = FlagOp::kNone;
  }
}

inline bool carry_flag(const Cpu& cpu) {
  const LazyFlags& f = cpu.flags;
  const uint64_t mask = size_mask(f.size);
  switch (f.op) {
    case FlagOp::kNone: return cpu.rflags & kFlagCf;
    case FlagOp::kAdd: return (f.res & mask) < (f.a & mask);
    case FlagOp::kSub: return (f.a & mask) < (f.b & mask);
    case FlagOp::kLogic: return false;
    case FlagOp::kInc:
    case FlagOp::kDec: return f.carry;
    default: return compute_arith_flags(f) & kFlagCf;
  }
}

// Replaces the arithmetic flags with explicit values (shifts, MUL, BT...).
inline void set_arith_flags(Cpu& cpu, uint64_t arith) {
  cpu.rflags = (cpu.rflags & ~kArithFlags) | (arith & kArithFlags);
  cpu.flags.op = FlagOp::kNone;
}

// Replaces only the flags in `which` (the rest keep their current values).
inline void update_flags(Cpu& cpu, uint64_t which, uint64_t values) {
  materialize_flags(cpu);
  cpu.rflags = (cpu.rflags & ~which) | (values & which);
}

inline void record_flags(Cpu& cpu, FlagOp op, unsigned size, uint64_t res, uint64_t a, uint64_t b, uint8_t carry = 0) {
  cpu.flags.op = op;
  cpu.flags.size = static_cast<uint8_t>(size);
  cpu.flags.res = res;
  cpu.flags.a = a;
  cpu.flags.b = b;
  cpu.flags.carry = carry;
}

// Evaluates condition code `cc` (the low nibble of Jcc/SETcc/CMOVcc opcodes).
// The common conditions come straight from the recorded operation, without
// computing all six flags: ZF and SF from any result, every condition but
// parity after CMP/SUB and after a logic operation (CF = OF = 0).
inline bool condition(const Cpu& cpu, unsigned cc) {
  const LazyFlags& f = cpu.flags;
  if (f.op != FlagOp::kNone) {
    const uint64_t res = f.res & size_mask(f.size);
    const bool zf = res == 0, sf = res & sign_bit(f.size);
    switch (cc) {
      case 4: return zf;
      case 5: return !zf;
      case 8: return sf;
      case 9: return !sf;
      default: break;
    }
    if (f.op == FlagOp::kLogic) {
      switch (cc) {
        case 0:
        case 2: return false;  // OF, CF
        case 1:
        case 3: return true;
        case 6: return zf;  // CF | ZF
        case 7: return !zf;
        case 0xc: return sf;  // SF != OF
        case 0xd: return !sf;
        case 0xe: return zf || sf;
        case 0xf: return !zf && !sf;
        default: break;
      }
    }
  }
  if (f.op == FlagOp::kSub && cc >= 2) {
    // Fast path for CMP/SUB: compare the operands directly.
    const uint64_t mask = size_mask(f.size);
    const uint64_t a = f.a & mask, b = f.b & mask;
    const int64_t sa = sign_extend(a, f.size), sb = sign_extend(b, f.size);
    switch (cc) {
      case 2: return a < b;
      case 3: return a >= b;
      case 4: return a == b;
      case 5: return a != b;
      case 6: return a <= b;
      case 7: return a > b;
      case 0xc: return sa < sb;
      case 0xd: return sa >= sb;
      case 0xe: return sa <= sb;
      case 0xf: return sa > sb;
      default: break;
    }
  }
  const uint64_t fl = read_flags(cpu);
  bool r;
  switch (cc >> 1) {
    case 0: r = fl & kFlagOf; break;
    case 1: r = fl & kFlagCf; break;
    case 2: r = fl & kFlagZf; break;
    case 3: r = fl & (kFlagCf | kFlagZf); break;
    case 4: r = fl & kFlagSf; break;
    case 5: r = fl & kFlagPf; break;
    case 6: r = !(fl & kFlagSf) != !(fl & kFlagOf); break;
    default: r = (fl & kFlagZf) || (!(fl & kFlagSf) != !(fl & kFlagOf)); break;
  }
  return (cc & 1) ? !r : r;
}

// Writes RFLAGS from a full value (POPF, IRET, set_registers).
inline void write_flags(Cpu& cpu, uint64_t value) {
  cpu.rflags = (value & 0x3f7fd7) | 2;  // reserved bits: 1 is one; 3, 5, 15, 22+ are zero
  cpu.flags.op = FlagOp::kNone;
}

}  // namespace hostvisor::emu
