// SSE and SSE2 moves, logic, packed integer arithmetic, compares,
// shuffles/unpacks and shifts, and the MMX forms of the integer
// instructions (the same handlers, with 8-byte lanes sets for MMX
// registers). Floating point is in sse_float.cpp.
#include <cstring>
#include <limits>

#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/simd.h"

namespace hostvisor::emu {
namespace {
// dest = f(dest lane, source lane) for every lane of type T.
template <typename T, typename F>
void lanewise(Cpu& cpu, const Insn& insn, F f) {
  check_simd(cpu, insn);
  const V128 b = source(cpu, insn, 1);
  V128 a = load_reg(cpu, insn.op[0]);
  for (unsigned i = 0; i < width(insn) / sizeof(T); ++i) set_lane<T>(a, i, f(lane<T>(a, i), lane<T>(b, i)));
  store_reg(cpu, insn.op[0], a);
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
  check_simd(cpu, insn);
  uint64_t count;
  if (insn.op[1].kind == OpKind::kImm) {
    count = insn.imm & 0xff;
  } else {
    count = lane<uint64_t>(source(cpu, insn, 1), 0);
  }
  V128 a = load_reg(cpu, insn.op[0]);
  constexpr unsigned bits = sizeof(T) * 8;
  for (unsigned i = 0; i < width(insn) / sizeof(T); ++i) {
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
  store_reg(cpu, insn.op[0], a);
}

template <typename T>
void unpack(Cpu& cpu, const Insn& insn, bool high) {
  check_simd(cpu, insn);
  const V128 b = source(cpu, insn, 1);
  const V128 a = load_reg(cpu, insn.op[0]);
  V128 r{};
  const unsigned n = width(insn) / sizeof(T);
  const unsigned base = high ? n / 2 : 0;
  for (unsigned i = 0; i < n / 2; ++i) {
    set_lane<T>(r, 2 * i, lane<T>(a, base + i));
    set_lane<T>(r, 2 * i + 1, lane<T>(b, base + i));
  }
  store_reg(cpu, insn.op[0], r);
}

// PACKSS*/PACKUS*: the destination's lanes, then the source's, each
// saturated to the narrower type.
template <typename Wide, typename Narrow>
void pack(Cpu& cpu, const Insn& insn) {
  check_simd(cpu, insn);
  const V128 b = source(cpu, insn, 1);
  const V128 a = load_reg(cpu, insn.op[0]);
  V128 r{};
  const unsigned n = width(insn) / sizeof(Wide);
  auto saturate = [](Wide x) {
    if (x < static_cast<Wide>(std::numeric_limits<Narrow>::min())) return std::numeric_limits<Narrow>::min();
    if (x > static_cast<Wide>(std::numeric_limits<Narrow>::max())) return std::numeric_limits<Narrow>::max();
    return static_cast<Narrow>(x);
  };
  for (unsigned i = 0; i < n; ++i) {
    set_lane<Narrow>(r, i, saturate(lane<Wide>(a, i)));
    set_lane<Narrow>(r, n + i, saturate(lane<Wide>(b, i)));
  }
  store_reg(cpu, insn.op[0], r);
}

// Saturating lane arithmetic.
template <typename T>
T saturate(int64_t x) {
  if (x < std::numeric_limits<T>::min()) return std::numeric_limits<T>::min();
  if (x > std::numeric_limits<T>::max()) return std::numeric_limits<T>::max();
  return static_cast<T>(x);
}

}  // namespace

void h_sse_mov_aligned(Cpu& cpu, const Insn& insn) { move(cpu, insn, true); }
void h_sse_mov_unaligned(Cpu& cpu, const Insn& insn) { move(cpu, insn, false); }

// MOVD/MOVQ between XMM or MMX registers, GPRs and memory; MOVNTQ.
void h_sse_movd(Cpu& cpu, const Insn& insn) {
  check_simd(cpu, insn);
  const Operand& d = insn.op[0];
  const Operand& s = insn.op[1];
  if (d.kind == OpKind::kXmm || d.kind == OpKind::kMmx) {
    // Into a vector register: the low 4/8 bytes, the rest zeroed.
    const unsigned size = (s.kind == OpKind::kXmm || s.kind == OpKind::kMmx) ? 8 : s.size;
    const V128 v = source(cpu, insn, 1, false);
    V128 r{};
    std::memcpy(r.b, v.b, size);
    store_reg(cpu, d, r);
  } else {
    const V128 v = load_reg(cpu, s);
    uint64_t x = 0;
    std::memcpy(&x, v.b, d.size);
    write_op(cpu, insn, 0, x);
    finish(cpu, insn);
  }
}

// MOVQ2DQ xmm, mm and MOVDQ2Q mm, xmm.
void h_movq2dq(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  check_mmx(cpu);
  V128 v = load_reg(cpu, insn.op[1]);
  std::memset(v.b + 8, 0, 8);
  store_reg(cpu, insn.op[0], v);
  finish(cpu, insn);
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
  check_simd(cpu, insn);
  const V128 v = load_reg(cpu, insn.op[1]);
  uint64_t mask = 0;
  const unsigned n = insn.op[1].kind == OpKind::kMmx ? 8 : 16;
  for (unsigned i = 0; i < n; ++i) mask |= static_cast<uint64_t>(v.b[i] >> 7) << i;
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, mask);
  finish(cpu, insn);
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

namespace {
// SHUFPS/SHUFPD: the low half of the result picks lanes of the destination,
// the high half lanes of the source, each by its own field of the immediate.
template <typename T>
void shuffle(Cpu& cpu, const Insn& insn) {
  constexpr unsigned kLanes = 16 / sizeof(T);
  constexpr unsigned kFieldBits = kLanes == 4 ? 2 : 1;
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1);
  const V128 a = load_xmm(cpu, insn.op[0].reg);
  V128 r;
  for (unsigned i = 0; i < kLanes; ++i) {
    const unsigned pick = (insn.imm >> (kFieldBits * i)) & (kLanes - 1);
    set_lane<T>(r, i, lane<T>(i < kLanes / 2 ? a : b, pick));
  }
  store_xmm(cpu, insn.op[0].reg, r);
}
}  // namespace

void h_sse_shufps(Cpu& cpu, const Insn& insn) { shuffle<uint32_t>(cpu, insn); }
void h_sse_shufpd(Cpu& cpu, const Insn& insn) { shuffle<uint64_t>(cpu, insn); }

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

void h_sse_paddsb(Cpu& cpu, const Insn& insn) {
  lanewise<int8_t>(cpu, insn, [](int8_t a, int8_t b) { return saturate<int8_t>(a + b); });
}
void h_sse_paddsw(Cpu& cpu, const Insn& insn) {
  lanewise<int16_t>(cpu, insn, [](int16_t a, int16_t b) { return saturate<int16_t>(a + b); });
}
void h_sse_paddusw(Cpu& cpu, const Insn& insn) { lanewise<uint16_t>(cpu, insn, saturate_add_unsigned<uint16_t>); }
void h_sse_psubsb(Cpu& cpu, const Insn& insn) {
  lanewise<int8_t>(cpu, insn, [](int8_t a, int8_t b) { return saturate<int8_t>(a - b); });
}
void h_sse_psubsw(Cpu& cpu, const Insn& insn) {
  lanewise<int16_t>(cpu, insn, [](int16_t a, int16_t b) { return saturate<int16_t>(a - b); });
}
void h_sse_psubusw(Cpu& cpu, const Insn& insn) {
  lanewise<uint16_t>(cpu, insn, [](uint16_t a, uint16_t b) { return uint16_t(a > b ? a - b : 0); });
}
void h_sse_pmulhw(Cpu& cpu, const Insn& insn) {
  lanewise<int16_t>(cpu, insn, [](int16_t a, int16_t b) { return int16_t((int32_t{a} * b) >> 16); });
}
void h_sse_pmulhuw(Cpu& cpu, const Insn& insn) {
  lanewise<uint16_t>(cpu, insn, [](uint16_t a, uint16_t b) { return uint16_t((uint32_t{a} * b) >> 16); });
}
void h_sse_pavgb(Cpu& cpu, const Insn& insn) {
  lanewise<uint8_t>(cpu, insn, [](uint8_t a, uint8_t b) { return uint8_t((unsigned{a} + b + 1) >> 1); });
}
void h_sse_pavgw(Cpu& cpu, const Insn& insn) {
  lanewise<uint16_t>(cpu, insn, [](uint16_t a, uint16_t b) { return uint16_t((unsigned{a} + b + 1) >> 1); });
}
void h_sse_pminsw(Cpu& cpu, const Insn& insn) {
  lanewise<int16_t>(cpu, insn, [](int16_t a, int16_t b) { return a < b ? a : b; });
}
void h_sse_pmaxsw(Cpu& cpu, const Insn& insn) {
  lanewise<int16_t>(cpu, insn, [](int16_t a, int16_t b) { return a > b ? a : b; });
}
void h_sse_packsswb(Cpu& cpu, const Insn& insn) { pack<int16_t, int8_t>(cpu, insn); }
void h_sse_packssdw(Cpu& cpu, const Insn& insn) { pack<int32_t, int16_t>(cpu, insn); }
void h_sse_packuswb(Cpu& cpu, const Insn& insn) { pack<int16_t, uint8_t>(cpu, insn); }

// PMADDWD: pairs of signed word products summed into doublewords (0x8000 *
// 0x8000 twice wraps to 0x80000000, as the hardware's does).
void h_sse_pmaddwd(Cpu& cpu, const Insn& insn) {
  check_simd(cpu, insn);
  const V128 b = source(cpu, insn, 1);
  V128 a = load_reg(cpu, insn.op[0]);
  for (unsigned i = 0; i < width(insn) / 4; ++i) {
    const int64_t sum = int64_t{lane<int16_t>(a, 2 * i)} * lane<int16_t>(b, 2 * i) +
                        int64_t{lane<int16_t>(a, 2 * i + 1)} * lane<int16_t>(b, 2 * i + 1);
    set_lane<uint32_t>(a, i, static_cast<uint32_t>(sum));
  }
  store_reg(cpu, insn.op[0], a);
}

// PSADBW: per 8-byte group, the sum of absolute byte differences in the low word.
void h_sse_psadbw(Cpu& cpu, const Insn& insn) {
  check_simd(cpu, insn);
  const V128 b = source(cpu, insn, 1);
  const V128 a = load_reg(cpu, insn.op[0]);
  V128 r{};
  for (unsigned g = 0; g < width(insn) / 8; ++g) {
    uint64_t sum = 0;
    for (unsigned i = 8 * g; i < 8 * g + 8; ++i) sum += a.b[i] > b.b[i] ? a.b[i] - b.b[i] : b.b[i] - a.b[i];
    set_lane<uint64_t>(r, g, sum);
  }
  store_reg(cpu, insn.op[0], r);
}

void h_mmx_pshufw(Cpu& cpu, const Insn& insn) {
  check_mmx(cpu);
  const V128 s = source(cpu, insn, 1);
  V128 r{};
  for (unsigned i = 0; i < 4; ++i) set_lane<uint16_t>(r, i, lane<uint16_t>(s, (insn.imm >> (2 * i)) & 3));
  store_reg(cpu, insn.op[0], r);
}

void h_sse_pextrw(Cpu& cpu, const Insn& insn) {
  check_simd(cpu, insn);
  const V128 v = load_reg(cpu, insn.op[1]);
  const unsigned lanes = insn.op[1].kind == OpKind::kMmx ? 4 : 8;
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, lane<uint16_t>(v, insn.imm & (lanes - 1)));
  finish(cpu, insn);
}

void h_sse_pinsrw(Cpu& cpu, const Insn& insn) {
  check_simd(cpu, insn);
  const uint16_t w = static_cast<uint16_t>(insn.op[1].kind == OpKind::kMem
                                               ? read_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn))
                                               : get_reg(cpu, insn.op[1].reg, 2));
  V128 a = load_reg(cpu, insn.op[0]);
  const unsigned lanes = width(insn) / 2;
  set_lane<uint16_t>(a, insn.imm & (lanes - 1), w);
  store_reg(cpu, insn.op[0], a);
}

// MASKMOVQ/MASKMOVDQU: the bytes whose mask byte has its top bit set go to
// DS:[RDI] (or the override segment).
void h_sse_maskmov(Cpu& cpu, const Insn& insn) {
  check_simd(cpu, insn);
  const V128 data = load_reg(cpu, insn.op[0]);
  const V128 mask = load_reg(cpu, insn.op[1]);
  const unsigned n = width(insn);
  const uint64_t ea = cpu.gpr[7] & address_mask(insn.addrsize);
  bool any = false;
  for (unsigned i = 0; i < n; ++i) any |= (mask.b[i] & 0x80) != 0;
  if (any) {
    probe_write(cpu, insn.mem.seg, ea, n);
    for (unsigned i = 0; i < n; ++i) {
      if (mask.b[i] & 0x80) write_mem<uint8_t>(cpu, insn.mem.seg, (ea + i) & address_mask(insn.addrsize), data.b[i]);
    }
  }
  finish(cpu, insn);
}

void h_emms(Cpu& cpu, const Insn&) {
  check_mmx(cpu);
  cpu.x87.ftw = 0;
}

}  // namespace hostvisor::emu
