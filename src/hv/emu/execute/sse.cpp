// SSE and SSE2: 128-bit moves, logic, packed integer arithmetic, compares,
// shuffles/unpacks, shifts, and the common scalar and packed floating-point
// operations. Floating point uses the host's IEEE arithmetic in the default
// rounding mode; MXCSR exception flags and non-default rounding are not
// modelled yet.
#include <cmath>
#include <cstring>
#include <limits>

#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/operands.h"

namespace hostvisor::emu {
namespace {

constexpr uint64_t kCr0Em = 1ull << 2, kCr0Ts = 1ull << 3;
constexpr uint64_t kCr4Osfxsr = 1ull << 9;

struct V128 {
  uint8_t b[16];
};

void check_sse(const Cpu& cpu) {
  if ((cpu.cr0 & kCr0Em) || !(cpu.cr4 & kCr4Osfxsr)) raise(kUd);
  if (cpu.cr0 & kCr0Ts) raise(kNm);
}

V128 load_xmm(const Cpu& cpu, unsigned reg) {
  V128 v;
  std::memcpy(v.b, cpu.xmm[reg], 16);
  return v;
}

void store_xmm(Cpu& cpu, unsigned reg, const V128& v) { std::memcpy(cpu.xmm[reg], v.b, 16); }

// Reads `size` bytes (16, 8 or 4) of a memory operand; legacy SSE requires
// 16-byte alignment for full-width operands of most instructions.
V128 load_memory(Cpu& cpu, const Insn& insn, unsigned size, bool aligned) {
  const uint64_t ea = effective_address(cpu, insn);
  if (aligned && size == 16 && (ea + cpu.seg[insn.mem.seg].base * !cpu.mode64) % 16) raise(kGp, 0);
  V128 v{};
  if (size == 16) {
    const uint64_t lo = read_mem<uint64_t>(cpu, insn.mem.seg, ea);
    const uint64_t hi = read_mem<uint64_t>(cpu, insn.mem.seg, (ea + 8) & address_mask(insn.addrsize));
    std::memcpy(v.b, &lo, 8);
    std::memcpy(v.b + 8, &hi, 8);
  } else {
    const uint64_t x = read_mem_n(cpu, insn.mem.seg, ea, size);
    std::memcpy(v.b, &x, size);
  }
  return v;
}

void store_memory(Cpu& cpu, const Insn& insn, const V128& v, unsigned size, bool aligned) {
  const uint64_t ea = effective_address(cpu, insn);
  if (aligned && size == 16 && (ea + cpu.seg[insn.mem.seg].base * !cpu.mode64) % 16) raise(kGp, 0);
  if (size == 16) {
    probe_write(cpu, insn.mem.seg, ea, 16);
    uint64_t lo, hi;
    std::memcpy(&lo, v.b, 8);
    std::memcpy(&hi, v.b + 8, 8);
    write_mem<uint64_t>(cpu, insn.mem.seg, ea, lo);
    write_mem<uint64_t>(cpu, insn.mem.seg, (ea + 8) & address_mask(insn.addrsize), hi);
  } else {
    uint64_t x = 0;
    std::memcpy(&x, v.b, size);
    write_mem_n(cpu, insn.mem.seg, ea, size, x);
  }
}

// Operand i as a vector: an XMM register or memory of the operand's size.
V128 source(Cpu& cpu, const Insn& insn, int i, bool aligned = true) {
  const Operand& o = insn.op[i];
  if (o.kind == OpKind::kXmm) return load_xmm(cpu, o.reg);
  if (o.kind == OpKind::kMem) return load_memory(cpu, insn, o.size ? o.size : 16, aligned);
  V128 v{};
  const uint64_t x = o.kind == OpKind::kReg ? get_reg(cpu, o.reg, o.size) : insn.imm;
  std::memcpy(v.b, &x, 8);
  return v;
}

template <typename T>
T lane(const V128& v, unsigned i) {
  T x;
  std::memcpy(&x, v.b + i * sizeof(T), sizeof(T));
  return x;
}
template <typename T>
void set_lane(V128& v, unsigned i, T x) {
  std::memcpy(v.b + i * sizeof(T), &x, sizeof(T));
}

// dest = f(dest lane, source lane) for every lane of type T.
template <typename T, typename F>
void lanewise(Cpu& cpu, const Insn& insn, F f) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  for (unsigned i = 0; i < 16 / sizeof(T); ++i) set_lane<T>(a, i, f(lane<T>(a, i), lane<T>(b, i)));
  store_xmm(cpu, insn.op[0].reg, a);
}

// A move between XMM registers and memory of the full operand width.
void move(Cpu& cpu, const Insn& insn, bool aligned) {
  check_sse(cpu);
  const V128 v = source(cpu, insn, 1, aligned);
  if (insn.op[0].kind == OpKind::kXmm) {
    store_xmm(cpu, insn.op[0].reg, v);
  } else {
    store_memory(cpu, insn, v, 16, aligned);
  }
}

template <typename T>
T saturate_add_unsigned(T a, T b) {
  T r = static_cast<T>(a + b);
  return r < a ? std::numeric_limits<T>::max() : r;
}

// Shift by an immediate or by the low 64 bits of an XMM/m128 count.
template <typename T, bool kLeft, bool kArithmetic>
void shift(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  uint64_t count;
  if (insn.op[1].kind == OpKind::kImm) {
    count = insn.imm & 0xff;
  } else {
    count = lane<uint64_t>(source(cpu, insn, 1), 0);
  }
  V128 a = load_xmm(cpu, insn.op[0].reg);
  constexpr unsigned bits = sizeof(T) * 8;
  for (unsigned i = 0; i < 16 / sizeof(T); ++i) {
    T x = lane<T>(a, i);
    if constexpr (kArithmetic) {
      using S = std::make_signed_t<T>;
      x = static_cast<T>(static_cast<S>(x) >> (count >= bits ? bits - 1 : count));
    } else if (count >= bits) {
      x = 0;
    } else {
      x = kLeft ? static_cast<T>(x << count) : static_cast<T>(x >> count);
    }
    set_lane<T>(a, i, x);
  }
  store_xmm(cpu, insn.op[0].reg, a);
}

template <typename T>
void unpack(Cpu& cpu, const Insn& insn, bool high) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1);
  const V128 a = load_xmm(cpu, insn.op[0].reg);
  V128 r;
  constexpr unsigned n = 16 / sizeof(T);
  const unsigned base = high ? n / 2 : 0;
  for (unsigned i = 0; i < n / 2; ++i) {
    set_lane<T>(r, 2 * i, lane<T>(a, base + i));
    set_lane<T>(r, 2 * i + 1, lane<T>(b, base + i));
  }
  store_xmm(cpu, insn.op[0].reg, r);
}

template <typename T, typename F>
void scalar(Cpu& cpu, const Insn& insn, F f) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1, false);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  set_lane<T>(a, 0, f(lane<T>(a, 0), lane<T>(b, 0)));
  store_xmm(cpu, insn.op[0].reg, a);
}

template <typename T>
void compare_scalar(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1, false);
  const T x = lane<T>(load_xmm(cpu, insn.op[0].reg), 0), y = lane<T>(b, 0);
  uint64_t f = 0;
  if (std::isnan(x) || std::isnan(y)) {
    f = kFlagZf | kFlagPf | kFlagCf;
  } else if (x < y) {
    f = kFlagCf;
  } else if (x == y) {
    f = kFlagZf;
  }
  set_arith_flags(cpu, f);
}

// Float -> integer with truncation; NaN and out-of-range give the "integer indefinite" value.
template <typename F>
uint64_t truncate_to_int(F v, unsigned size) {
  const int64_t indefinite = size == 8 ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int32_t>::min();
  const F limit = size == 8 ? F(9223372036854775808.0) : F(2147483648.0);
  if (std::isnan(v) || v >= limit || v < -limit) return static_cast<uint64_t>(indefinite) & size_mask(size);
  return static_cast<uint64_t>(static_cast<int64_t>(v)) & size_mask(size);
}

}  // namespace

void h_sse_mov_aligned(Cpu& cpu, const Insn& insn) { move(cpu, insn, true); }
void h_sse_mov_unaligned(Cpu& cpu, const Insn& insn) { move(cpu, insn, false); }

void h_sse_movd(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const Operand& d = insn.op[0];
  const Operand& s = insn.op[1];
  if (d.kind == OpKind::kXmm) {
    // Into an XMM register: the low 4/8 bytes, the rest zeroed.
    const unsigned size = s.kind == OpKind::kXmm ? 8 : s.size;
    const V128 v = source(cpu, insn, 1, false);
    V128 r{};
    std::memcpy(r.b, v.b, size);
    store_xmm(cpu, d.reg, r);
  } else {
    const V128 v = load_xmm(cpu, s.reg);
    uint64_t x = 0;
    std::memcpy(&x, v.b, d.size);
    write_op(cpu, insn, 0, x);
  }
}

namespace {
template <typename T>
void move_scalar(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const Operand& d = insn.op[0];
  const Operand& s = insn.op[1];
  if (d.kind == OpKind::kXmm && s.kind == OpKind::kXmm) {
    V128 a = load_xmm(cpu, d.reg);
    set_lane<T>(a, 0, lane<T>(load_xmm(cpu, s.reg), 0));
    store_xmm(cpu, d.reg, a);
  } else if (d.kind == OpKind::kXmm) {
    store_xmm(cpu, d.reg, load_memory(cpu, insn, sizeof(T), false));  // a load zeroes the rest
  } else {
    store_memory(cpu, insn, load_xmm(cpu, s.reg), sizeof(T), false);
  }
}
}  // namespace

void h_sse_movss(Cpu& cpu, const Insn& insn) { move_scalar<uint32_t>(cpu, insn); }
void h_sse_movsd(Cpu& cpu, const Insn& insn) { move_scalar<uint64_t>(cpu, insn); }

void h_sse_movlp(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  if (insn.op[0].kind == OpKind::kXmm) {
    V128 a = load_xmm(cpu, insn.op[0].reg);
    set_lane<uint64_t>(a, 0, lane<uint64_t>(source(cpu, insn, 1, false), 0));
    store_xmm(cpu, insn.op[0].reg, a);
  } else {
    store_memory(cpu, insn, load_xmm(cpu, insn.op[1].reg), 8, false);
  }
}

void h_sse_movhp(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  if (insn.op[0].kind == OpKind::kXmm) {
    V128 a = load_xmm(cpu, insn.op[0].reg);
    set_lane<uint64_t>(a, 1, lane<uint64_t>(source(cpu, insn, 1, false), 0));
    store_xmm(cpu, insn.op[0].reg, a);
  } else {
    V128 v{};
    set_lane<uint64_t>(v, 0, lane<uint64_t>(load_xmm(cpu, insn.op[1].reg), 1));
    store_memory(cpu, insn, v, 8, false);
  }
}

void h_sse_movhlps(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  set_lane<uint64_t>(a, 0, lane<uint64_t>(load_xmm(cpu, insn.op[1].reg), 1));
  store_xmm(cpu, insn.op[0].reg, a);
}

void h_sse_movlhps(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  set_lane<uint64_t>(a, 1, lane<uint64_t>(load_xmm(cpu, insn.op[1].reg), 0));
  store_xmm(cpu, insn.op[0].reg, a);
}

void h_sse_xor(Cpu& cpu, const Insn& insn) {
  lanewise<uint64_t>(cpu, insn, [](uint64_t a, uint64_t b) { return a ^ b; });
}
void h_sse_and(Cpu& cpu, const Insn& insn) {
  lanewise<uint64_t>(cpu, insn, [](uint64_t a, uint64_t b) { return a & b; });
}
void h_sse_andn(Cpu& cpu, const Insn& insn) {
  lanewise<uint64_t>(cpu, insn, [](uint64_t a, uint64_t b) { return ~a & b; });
}
void h_sse_or(Cpu& cpu, const Insn& insn) {
  lanewise<uint64_t>(cpu, insn, [](uint64_t a, uint64_t b) { return a | b; });
}

void h_sse_paddb(Cpu& cpu, const Insn& insn) {
  lanewise<uint8_t>(cpu, insn, [](uint8_t a, uint8_t b) { return uint8_t(a + b); });
}
void h_sse_paddw(Cpu& cpu, const Insn& insn) {
  lanewise<uint16_t>(cpu, insn, [](uint16_t a, uint16_t b) { return uint16_t(a + b); });
}
void h_sse_paddd(Cpu& cpu, const Insn& insn) {
  lanewise<uint32_t>(cpu, insn, [](uint32_t a, uint32_t b) { return a + b; });
}
void h_sse_paddq(Cpu& cpu, const Insn& insn) {
  lanewise<uint64_t>(cpu, insn, [](uint64_t a, uint64_t b) { return a + b; });
}
void h_sse_psubb(Cpu& cpu, const Insn& insn) {
  lanewise<uint8_t>(cpu, insn, [](uint8_t a, uint8_t b) { return uint8_t(a - b); });
}
void h_sse_psubw(Cpu& cpu, const Insn& insn) {
  lanewise<uint16_t>(cpu, insn, [](uint16_t a, uint16_t b) { return uint16_t(a - b); });
}
void h_sse_psubd(Cpu& cpu, const Insn& insn) {
  lanewise<uint32_t>(cpu, insn, [](uint32_t a, uint32_t b) { return a - b; });
}
void h_sse_psubq(Cpu& cpu, const Insn& insn) {
  lanewise<uint64_t>(cpu, insn, [](uint64_t a, uint64_t b) { return a - b; });
}
void h_sse_pcmpeqb(Cpu& cpu, const Insn& insn) {
  lanewise<uint8_t>(cpu, insn, [](uint8_t a, uint8_t b) { return uint8_t(a == b ? 0xff : 0); });
}
void h_sse_pcmpeqw(Cpu& cpu, const Insn& insn) {
  lanewise<uint16_t>(cpu, insn, [](uint16_t a, uint16_t b) { return uint16_t(a == b ? 0xffff : 0); });
}
void h_sse_pcmpeqd(Cpu& cpu, const Insn& insn) {
  lanewise<uint32_t>(cpu, insn, [](uint32_t a, uint32_t b) { return a == b ? ~0u : 0u; });
}
void h_sse_pcmpgtb(Cpu& cpu, const Insn& insn) {
  lanewise<int8_t>(cpu, insn, [](int8_t a, int8_t b) { return int8_t(a > b ? -1 : 0); });
}
void h_sse_pcmpgtw(Cpu& cpu, const Insn& insn) {
  lanewise<int16_t>(cpu, insn, [](int16_t a, int16_t b) { return int16_t(a > b ? -1 : 0); });
}
void h_sse_pcmpgtd(Cpu& cpu, const Insn& insn) {
  lanewise<int32_t>(cpu, insn, [](int32_t a, int32_t b) { return a > b ? -1 : 0; });
}
void h_sse_pminub(Cpu& cpu, const Insn& insn) {
  lanewise<uint8_t>(cpu, insn, [](uint8_t a, uint8_t b) { return a < b ? a : b; });
}
void h_sse_pmaxub(Cpu& cpu, const Insn& insn) {
  lanewise<uint8_t>(cpu, insn, [](uint8_t a, uint8_t b) { return a > b ? a : b; });
}
void h_sse_psubusb(Cpu& cpu, const Insn& insn) {
  lanewise<uint8_t>(cpu, insn, [](uint8_t a, uint8_t b) { return uint8_t(a > b ? a - b : 0); });
}
void h_sse_paddusb(Cpu& cpu, const Insn& insn) { lanewise<uint8_t>(cpu, insn, saturate_add_unsigned<uint8_t>); }
void h_sse_pmullw(Cpu& cpu, const Insn& insn) {
  lanewise<uint16_t>(cpu, insn, [](uint16_t a, uint16_t b) { return uint16_t(a * b); });
}

void h_sse_pmuludq(Cpu& cpu, const Insn& insn) {
  lanewise<uint64_t>(cpu, insn, [](uint64_t a, uint64_t b) { return (a & 0xffffffff) * (b & 0xffffffff); });
}

void h_sse_pmovmskb(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 v = load_xmm(cpu, insn.op[1].reg);
  uint64_t mask = 0;
  for (unsigned i = 0; i < 16; ++i) mask |= static_cast<uint64_t>(v.b[i] >> 7) << i;
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, mask);
}

void h_sse_movmskps(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 v = load_xmm(cpu, insn.op[1].reg);
  uint64_t mask = 0;
  for (unsigned i = 0; i < 4; ++i) mask |= static_cast<uint64_t>(lane<uint32_t>(v, i) >> 31) << i;
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, mask);
}

void h_sse_movmskpd(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 v = load_xmm(cpu, insn.op[1].reg);
  uint64_t mask = (lane<uint64_t>(v, 0) >> 63) | ((lane<uint64_t>(v, 1) >> 63) << 1);
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, mask);
}

void h_sse_punpcklbw(Cpu& cpu, const Insn& insn) { unpack<uint8_t>(cpu, insn, false); }
void h_sse_punpcklwd(Cpu& cpu, const Insn& insn) { unpack<uint16_t>(cpu, insn, false); }
void h_sse_punpckldq(Cpu& cpu, const Insn& insn) { unpack<uint32_t>(cpu, insn, false); }
void h_sse_punpcklqdq(Cpu& cpu, const Insn& insn) { unpack<uint64_t>(cpu, insn, false); }
void h_sse_punpckhbw(Cpu& cpu, const Insn& insn) { unpack<uint8_t>(cpu, insn, true); }
void h_sse_punpckhwd(Cpu& cpu, const Insn& insn) { unpack<uint16_t>(cpu, insn, true); }
void h_sse_punpckhdq(Cpu& cpu, const Insn& insn) { unpack<uint32_t>(cpu, insn, true); }
void h_sse_punpckhqdq(Cpu& cpu, const Insn& insn) { unpack<uint64_t>(cpu, insn, true); }

void h_sse_pshufd(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 s = source(cpu, insn, 1);
  V128 r;
  for (unsigned i = 0; i < 4; ++i) set_lane<uint32_t>(r, i, lane<uint32_t>(s, (insn.imm >> (2 * i)) & 3));
  store_xmm(cpu, insn.op[0].reg, r);
}

void h_sse_pshuflw(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 s = source(cpu, insn, 1);
  V128 r = s;
  for (unsigned i = 0; i < 4; ++i) set_lane<uint16_t>(r, i, lane<uint16_t>(s, (insn.imm >> (2 * i)) & 3));
  store_xmm(cpu, insn.op[0].reg, r);
}

void h_sse_pshufhw(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 s = source(cpu, insn, 1);
  V128 r = s;
  for (unsigned i = 0; i < 4; ++i) set_lane<uint16_t>(r, 4 + i, lane<uint16_t>(s, 4 + ((insn.imm >> (2 * i)) & 3)));
  store_xmm(cpu, insn.op[0].reg, r);
}

void h_sse_shufps(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1);
  const V128 a = load_xmm(cpu, insn.op[0].reg);
  V128 r;
  set_lane<uint32_t>(r, 0, lane<uint32_t>(a, insn.imm & 3));
  set_lane<uint32_t>(r, 1, lane<uint32_t>(a, (insn.imm >> 2) & 3));
  set_lane<uint32_t>(r, 2, lane<uint32_t>(b, (insn.imm >> 4) & 3));
  set_lane<uint32_t>(r, 3, lane<uint32_t>(b, (insn.imm >> 6) & 3));
  store_xmm(cpu, insn.op[0].reg, r);
}

void h_sse_pslldq(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const unsigned n = insn.imm & 0xff;
  const V128 a = load_xmm(cpu, insn.op[0].reg);
  V128 r{};
  for (unsigned i = n; i < 16; ++i) r.b[i] = a.b[i - n];
  store_xmm(cpu, insn.op[0].reg, r);
}

void h_sse_psrldq(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const unsigned n = insn.imm & 0xff;
  const V128 a = load_xmm(cpu, insn.op[0].reg);
  V128 r{};
  for (unsigned i = 0; i + n < 16; ++i) r.b[i] = a.b[i + n];
  store_xmm(cpu, insn.op[0].reg, r);
}

void h_sse_psllw(Cpu& cpu, const Insn& insn) { shift<uint16_t, true, false>(cpu, insn); }
void h_sse_pslld(Cpu& cpu, const Insn& insn) { shift<uint32_t, true, false>(cpu, insn); }
void h_sse_psllq(Cpu& cpu, const Insn& insn) { shift<uint64_t, true, false>(cpu, insn); }
void h_sse_psrlw(Cpu& cpu, const Insn& insn) { shift<uint16_t, false, false>(cpu, insn); }
void h_sse_psrld(Cpu& cpu, const Insn& insn) { shift<uint32_t, false, false>(cpu, insn); }
void h_sse_psrlq(Cpu& cpu, const Insn& insn) { shift<uint64_t, false, false>(cpu, insn); }
void h_sse_psraw(Cpu& cpu, const Insn& insn) { shift<uint16_t, false, true>(cpu, insn); }
void h_sse_psrad(Cpu& cpu, const Insn& insn) { shift<uint32_t, false, true>(cpu, insn); }

void h_sse_addsd(Cpu& cpu, const Insn& insn) {
  scalar<double>(cpu, insn, [](double a, double b) { return a + b; });
}
void h_sse_subsd(Cpu& cpu, const Insn& insn) {
  scalar<double>(cpu, insn, [](double a, double b) { return a - b; });
}
void h_sse_mulsd(Cpu& cpu, const Insn& insn) {
  scalar<double>(cpu, insn, [](double a, double b) { return a * b; });
}
void h_sse_divsd(Cpu& cpu, const Insn& insn) {
  scalar<double>(cpu, insn, [](double a, double b) { return a / b; });
}
void h_sse_sqrtsd(Cpu& cpu, const Insn& insn) {
  scalar<double>(cpu, insn, [](double, double b) { return std::sqrt(b); });
}
void h_sse_addss(Cpu& cpu, const Insn& insn) {
  scalar<float>(cpu, insn, [](float a, float b) { return a + b; });
}
void h_sse_subss(Cpu& cpu, const Insn& insn) {
  scalar<float>(cpu, insn, [](float a, float b) { return a - b; });
}
void h_sse_mulss(Cpu& cpu, const Insn& insn) {
  scalar<float>(cpu, insn, [](float a, float b) { return a * b; });
}
void h_sse_divss(Cpu& cpu, const Insn& insn) {
  scalar<float>(cpu, insn, [](float a, float b) { return a / b; });
}
void h_sse_addpd(Cpu& cpu, const Insn& insn) {
  lanewise<double>(cpu, insn, [](double a, double b) { return a + b; });
}
void h_sse_mulpd(Cpu& cpu, const Insn& insn) {
  lanewise<double>(cpu, insn, [](double a, double b) { return a * b; });
}
void h_sse_addps(Cpu& cpu, const Insn& insn) {
  lanewise<float>(cpu, insn, [](float a, float b) { return a + b; });
}
void h_sse_mulps(Cpu& cpu, const Insn& insn) {
  lanewise<float>(cpu, insn, [](float a, float b) { return a * b; });
}
// MIN/MAX return the second (source) operand when the operands are
// unordered (a NaN) or equal (+0 and -0), as the SDM specifies.
template <typename T>
T x86_min(T a, T b) {
  return a < b ? a : b;
}
template <typename T>
T x86_max(T a, T b) {
  return a > b ? a : b;
}
void h_sse_minsd(Cpu& cpu, const Insn& insn) { scalar<double>(cpu, insn, x86_min<double>); }
void h_sse_maxsd(Cpu& cpu, const Insn& insn) { scalar<double>(cpu, insn, x86_max<double>); }
void h_sse_minss(Cpu& cpu, const Insn& insn) { scalar<float>(cpu, insn, x86_min<float>); }
void h_sse_maxss(Cpu& cpu, const Insn& insn) { scalar<float>(cpu, insn, x86_max<float>); }
void h_sse_minpd(Cpu& cpu, const Insn& insn) { lanewise<double>(cpu, insn, x86_min<double>); }
void h_sse_maxpd(Cpu& cpu, const Insn& insn) { lanewise<double>(cpu, insn, x86_max<double>); }
void h_sse_minps(Cpu& cpu, const Insn& insn) { lanewise<float>(cpu, insn, x86_min<float>); }
void h_sse_maxps(Cpu& cpu, const Insn& insn) { lanewise<float>(cpu, insn, x86_max<float>); }
void h_sse_subpd(Cpu& cpu, const Insn& insn) {
  lanewise<double>(cpu, insn, [](double a, double b) { return a - b; });
}
void h_sse_subps(Cpu& cpu, const Insn& insn) {
  lanewise<float>(cpu, insn, [](float a, float b) { return a - b; });
}
void h_sse_divpd(Cpu& cpu, const Insn& insn) {
  lanewise<double>(cpu, insn, [](double a, double b) { return a / b; });
}
void h_sse_divps(Cpu& cpu, const Insn& insn) {
  lanewise<float>(cpu, insn, [](float a, float b) { return a / b; });
}
void h_sse_sqrtss(Cpu& cpu, const Insn& insn) {
  scalar<float>(cpu, insn, [](float, float b) { return std::sqrt(b); });
}
void h_sse_comisd(Cpu& cpu, const Insn& insn) { compare_scalar<double>(cpu, insn); }
void h_sse_comiss(Cpu& cpu, const Insn& insn) { compare_scalar<float>(cpu, insn); }

void h_sse_cvtsi2sd(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const int64_t v = sign_extend(read_op(cpu, insn, 1), insn.op[1].size);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  set_lane<double>(a, 0, static_cast<double>(v));
  store_xmm(cpu, insn.op[0].reg, a);
}

void h_sse_cvtsi2ss(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const int64_t v = sign_extend(read_op(cpu, insn, 1), insn.op[1].size);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  set_lane<float>(a, 0, static_cast<float>(v));
  store_xmm(cpu, insn.op[0].reg, a);
}

void h_sse_cvttsd2si(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const double v = lane<double>(source(cpu, insn, 1, false), 0);
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, truncate_to_int(v, insn.op[0].size));
}

void h_sse_cvttss2si(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const float v = lane<float>(source(cpu, insn, 1, false), 0);
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, truncate_to_int(v, insn.op[0].size));
}

void h_sse_cvtss2sd(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const float v = lane<float>(source(cpu, insn, 1, false), 0);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  set_lane<double>(a, 0, static_cast<double>(v));
  store_xmm(cpu, insn.op[0].reg, a);
}

void h_sse_cvtsd2ss(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const double v = lane<double>(source(cpu, insn, 1, false), 0);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  set_lane<float>(a, 0, static_cast<float>(v));
  store_xmm(cpu, insn.op[0].reg, a);
}

}  // namespace hostvisor::emu
