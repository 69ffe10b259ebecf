// SSE/SSE2 floating point under the guest's MXCSR. Each operation runs as
// the same instruction on the host, with the guest's rounding mode, DAZ and
// FTZ loaded and every exception masked, so results and the exception flags
// are the hardware's bit for bit. The flags it raises are then checked
// against the guest's masks: an unmasked one raises #XM (CR4.OSXMMEXCPT=1)
// or #UD, and the destination is left unchanged; masked ones are ORed into
// MXCSR's sticky flags.
#include <emmintrin.h>

#include <cmath>
#include <cstring>

#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/simd.h"

namespace hostvisor::emu {
namespace {

constexpr uint64_t kCr4Osxmmexcpt = 1ull << 10;
constexpr uint32_t kMxcsrIe = 1u << 0, kMxcsrDe = 1u << 1, kMxcsrZe = 1u << 2, kMxcsrUe = 1u << 4;
constexpr uint32_t kMxcsrFlags = 0x3f;
constexpr unsigned kMxcsrMaskShift = 7;
constexpr uint32_t kMxcsrFtz = 1u << 15;

// The MXCSR the host runs with: the guest's rounding, DAZ and FTZ, flags
// clear, every exception masked. An unmasked underflow makes the hardware
// ignore FTZ, so FTZ goes too.
uint32_t host_mxcsr(uint32_t guest) {
  uint32_t m = (guest | (kMxcsrFlags << kMxcsrMaskShift)) & ~kMxcsrFlags;
  if (!(guest & (kMxcsrUe << kMxcsrMaskShift))) m &= ~kMxcsrFtz;
  return m;
}

template <typename T>
bool any_denormal(const V128& v, unsigned lanes) {
  for (unsigned i = 0; i < lanes; ++i) {
    const T x = lane<T>(v, i);
    if (x != 0 && std::fpclassify(x) == FP_SUBNORMAL) return true;
  }
  return false;
}

// Applies the flags an operation raised: ORs them into MXCSR, or raises the
// SIMD exception when one is unmasked. `tiny` says whether a result is a
// denormal: with underflow unmasked that is an underflow even when exact,
// which the masked host run does not flag.
void commit_flags(Cpu& cpu, uint32_t raised, bool tiny) {
  const uint32_t masks = (cpu.mxcsr >> kMxcsrMaskShift) & kMxcsrFlags;
  if (tiny && !(masks & kMxcsrUe)) raised |= kMxcsrUe;
  const uint32_t unmasked = raised & ~masks;
  if (unmasked) {
    // Invalid, denormal and divide-by-zero are detected before the
    // computation: when one of them is delivered the others are not reported.
    constexpr uint32_t kPre = kMxcsrIe | kMxcsrDe | kMxcsrZe;
    if (unmasked & kPre) raised &= kPre;
    cpu.mxcsr |= raised;
    raise(cpu.cr4 & kCr4Osxmmexcpt ? kXm : kUd);
  }
  cpu.mxcsr |= raised;
}

// Runs `asm_text` (an SSE instruction on %[x] and %[y], and %[imm] when the
// instruction takes one) on the host under `mxcsr`; evaluates to the flags it
// raised. Extra asm inputs (the immediate) follow the text.
#define HV_HOST_SSE_RUN(asm_text, ...)                                                                   \
  __m128i x, y;                                                                                          \
  std::memcpy(&x, a.b, 16);                                                                              \
  std::memcpy(&y, b.b, 16);                                                                              \
  uint32_t saved, out;                                                                                   \
  asm volatile("stmxcsr %[saved]\n\tldmxcsr %[in]\n\t" asm_text "\n\tstmxcsr %[out]\n\tldmxcsr %[saved]" \
               : [x] "+x"(x), [saved] "=m"(saved), [out] "=m"(out)                                       \
               : [y] "x"(y), [in] "m"(mxcsr)__VA_OPT__(, ) __VA_ARGS__);                                 \
  std::memcpy(a.b, &x, 16);                                                                              \
  return out & kMxcsrFlags;

// `op %b, %a` on the host under `mxcsr`; returns the flags it raised.
#define HV_HOST_SSE(name, text) \
  uint32_t name(V128& a, const V128& b, uint32_t mxcsr) { HV_HOST_SSE_RUN(text " %[y], %[x]") }

HV_HOST_SSE(host_addsd, "addsd")
HV_HOST_SSE(host_subsd, "subsd")
HV_HOST_SSE(host_mulsd, "mulsd")
HV_HOST_SSE(host_divsd, "divsd")
HV_HOST_SSE(host_sqrtsd, "sqrtsd")
HV_HOST_SSE(host_minsd, "minsd")
HV_HOST_SSE(host_maxsd, "maxsd")
HV_HOST_SSE(host_addss, "addss")
HV_HOST_SSE(host_subss, "subss")
HV_HOST_SSE(host_mulss, "mulss")
HV_HOST_SSE(host_divss, "divss")
HV_HOST_SSE(host_sqrtss, "sqrtss")
HV_HOST_SSE(host_minss, "minss")
HV_HOST_SSE(host_maxss, "maxss")
HV_HOST_SSE(host_addpd, "addpd")
HV_HOST_SSE(host_subpd, "subpd")
HV_HOST_SSE(host_mulpd, "mulpd")
HV_HOST_SSE(host_divpd, "divpd")
HV_HOST_SSE(host_minpd, "minpd")
HV_HOST_SSE(host_maxpd, "maxpd")
HV_HOST_SSE(host_addps, "addps")
HV_HOST_SSE(host_subps, "subps")
HV_HOST_SSE(host_mulps, "mulps")
HV_HOST_SSE(host_divps, "divps")
HV_HOST_SSE(host_minps, "minps")
HV_HOST_SSE(host_maxps, "maxps")
HV_HOST_SSE(host_cvtss2sd, "cvtss2sd")
HV_HOST_SSE(host_cvtsd2ss, "cvtsd2ss")
HV_HOST_SSE(host_sqrtps, "sqrtps")
HV_HOST_SSE(host_sqrtpd, "sqrtpd")
HV_HOST_SSE(host_cvtps2pd, "cvtps2pd")
HV_HOST_SSE(host_cvtpd2ps, "cvtpd2ps")
HV_HOST_SSE(host_cvtdq2ps, "cvtdq2ps")
HV_HOST_SSE(host_cvtps2dq, "cvtps2dq")
HV_HOST_SSE(host_cvttps2dq, "cvttps2dq")
HV_HOST_SSE(host_cvtdq2pd, "cvtdq2pd")
HV_HOST_SSE(host_cvtpd2dq, "cvtpd2dq")
HV_HOST_SSE(host_cvttpd2dq, "cvttpd2dq")
HV_HOST_SSE(host_rcpps, "rcpps")
HV_HOST_SSE(host_rcpss, "rcpss")
HV_HOST_SSE(host_rsqrtps, "rsqrtps")
HV_HOST_SSE(host_rsqrtss, "rsqrtss")
#undef HV_HOST_SSE

// CMPPS/CMPPD/CMPSS/CMPSD with predicate N (legacy SSE uses imm8 bits 2:0).
#define HV_HOST_SSE_CMP(name, text)                           \
  template <int N>                                            \
  uint32_t name(V128& a, const V128& b, uint32_t mxcsr) {     \
    HV_HOST_SSE_RUN(text " %[imm], %[y], %[x]", [imm] "i"(N)) \
  }
HV_HOST_SSE_CMP(host_cmpps, "cmpps")
HV_HOST_SSE_CMP(host_cmppd, "cmppd")
HV_HOST_SSE_CMP(host_cmpss, "cmpss")
HV_HOST_SSE_CMP(host_cmpsd, "cmpsd")
#undef HV_HOST_SSE_CMP
#undef HV_HOST_SSE_RUN

using HostOp = uint32_t (*)(V128&, const V128&, uint32_t);

// The eight predicates of one compare form as a table.
#define HV_CMP_TABLE(name, fn) constexpr HostOp name[8] = {fn<0>, fn<1>, fn<2>, fn<3>, fn<4>, fn<5>, fn<6>, fn<7>};
HV_CMP_TABLE(kCmpps, host_cmpps)
HV_CMP_TABLE(kCmppd, host_cmppd)
HV_CMP_TABLE(kCmpss, host_cmpss)
HV_CMP_TABLE(kCmpsd, host_cmpsd)
#undef HV_CMP_TABLE

// dest = op(dest, source): `T` is the result lane type, `lanes` how many
// lanes the operation writes (1 for scalar forms, whose memory source is a
// single element and needs no alignment).
// `exact` operations (MIN/MAX, compares, conversions to integers or to a
// wider format) never produce an underflow.
template <typename T>
void float_op(Cpu& cpu, const Insn& insn, HostOp op, unsigned lanes, bool exact) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1, lanes > 1);
  V128 a = load_xmm(cpu, insn.op[0].reg);
  const uint32_t raised = op(a, b, host_mxcsr(cpu.mxcsr));
  commit_flags(cpu, raised, !exact && any_denormal<T>(a, lanes));
  store_xmm(cpu, insn.op[0].reg, a);
}

template <typename T>
void scalar(Cpu& cpu, const Insn& insn, HostOp op, bool exact = false) {
  float_op<T>(cpu, insn, op, 1, exact);
}
template <typename T>
void packed(Cpu& cpu, const Insn& insn, HostOp op, bool exact = false) {
  float_op<T>(cpu, insn, op, 16 / sizeof(T), exact);
}

// COMISD/UCOMISD/COMISS/UCOMISS: ZF, PF, CF from the comparison, OF, SF, AF
// cleared. COMIS* signal invalid for any NaN, UCOMIS* only for SNaN.
template <bool kDouble, bool kOrdered>
void compare(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1, false);
  const V128 a = load_xmm(cpu, insn.op[0].reg);
  __m128i x, y;
  std::memcpy(&x, a.b, 16);
  std::memcpy(&y, b.b, 16);
  uint32_t saved, out, mxcsr = host_mxcsr(cpu.mxcsr);
  uint8_t zf, pf, cf;
#define HV_COMPARE(text)                                                                              \
  asm volatile("stmxcsr %[saved]\n\tldmxcsr %[in]\n\t" text                                           \
               " %[y], %[x]\n\t"                                                                      \
               "setz %[zf]\n\tsetp %[pf]\n\tsetc %[cf]\n\tstmxcsr %[out]\n\tldmxcsr %[saved]"         \
               : [saved] "=m"(saved), [out] "=m"(out), [zf] "=qm"(zf), [pf] "=qm"(pf), [cf] "=qm"(cf) \
               : [x] "x"(x), [y] "x"(y), [in] "m"(mxcsr)                                              \
               : "cc")
  if constexpr (kDouble && kOrdered) {
    HV_COMPARE("comisd");
  } else if constexpr (kDouble) {
    HV_COMPARE("ucomisd");
  } else if constexpr (kOrdered) {
    HV_COMPARE("comiss");
  } else {
    HV_COMPARE("ucomiss");
  }
#undef HV_COMPARE
  commit_flags(cpu, out & kMxcsrFlags, false);
  set_arith_flags(cpu, (zf ? kFlagZf : 0) | (pf ? kFlagPf : 0) | (cf ? kFlagCf : 0));
}

}  // namespace

// ADD, SUB, MUL, DIV, SQRT, MIN and MAX each come in the same four forms:
// one double, one float, every double lane, every float lane. MIN and MAX
// are exact (they return one of their inputs).
#define HV_SSE_FOUR_FORMS(op, exact)                                                                   \
  void h_sse_##op##sd(Cpu& cpu, const Insn& insn) { scalar<double>(cpu, insn, host_##op##sd, exact); } \
  void h_sse_##op##ss(Cpu& cpu, const Insn& insn) { scalar<float>(cpu, insn, host_##op##ss, exact); }  \
  void h_sse_##op##pd(Cpu& cpu, const Insn& insn) { packed<double>(cpu, insn, host_##op##pd, exact); } \
  void h_sse_##op##ps(Cpu& cpu, const Insn& insn) { packed<float>(cpu, insn, host_##op##ps, exact); }
HV_SSE_FOUR_FORMS(add, false)
HV_SSE_FOUR_FORMS(sub, false)
HV_SSE_FOUR_FORMS(mul, false)
HV_SSE_FOUR_FORMS(div, false)
HV_SSE_FOUR_FORMS(sqrt, false)
HV_SSE_FOUR_FORMS(min, true)
HV_SSE_FOUR_FORMS(max, true)
#undef HV_SSE_FOUR_FORMS

void h_sse_cvtss2sd(Cpu& cpu, const Insn& insn) { scalar<double>(cpu, insn, host_cvtss2sd); }
void h_sse_cvtsd2ss(Cpu& cpu, const Insn& insn) { scalar<float>(cpu, insn, host_cvtsd2ss); }
void h_sse_cvtps2pd(Cpu& cpu, const Insn& insn) { float_op<double>(cpu, insn, host_cvtps2pd, 2, true); }
void h_sse_cvtpd2ps(Cpu& cpu, const Insn& insn) { float_op<float>(cpu, insn, host_cvtpd2ps, 2, false); }
void h_sse_cvtdq2ps(Cpu& cpu, const Insn& insn) { packed<float>(cpu, insn, host_cvtdq2ps, true); }
void h_sse_cvtps2dq(Cpu& cpu, const Insn& insn) { packed<float>(cpu, insn, host_cvtps2dq, true); }
void h_sse_cvttps2dq(Cpu& cpu, const Insn& insn) { packed<float>(cpu, insn, host_cvttps2dq, true); }
void h_sse_cvtdq2pd(Cpu& cpu, const Insn& insn) { float_op<double>(cpu, insn, host_cvtdq2pd, 2, true); }
void h_sse_cvtpd2dq(Cpu& cpu, const Insn& insn) { packed<double>(cpu, insn, host_cvtpd2dq, true); }
void h_sse_cvttpd2dq(Cpu& cpu, const Insn& insn) { packed<double>(cpu, insn, host_cvttpd2dq, true); }
void h_sse_rcpps(Cpu& cpu, const Insn& insn) { packed<float>(cpu, insn, host_rcpps, true); }
void h_sse_rcpss(Cpu& cpu, const Insn& insn) { scalar<float>(cpu, insn, host_rcpss, true); }
void h_sse_rsqrtps(Cpu& cpu, const Insn& insn) { packed<float>(cpu, insn, host_rsqrtps, true); }
void h_sse_rsqrtss(Cpu& cpu, const Insn& insn) { scalar<float>(cpu, insn, host_rsqrtss, true); }
void h_sse_cmpps(Cpu& cpu, const Insn& insn) { packed<float>(cpu, insn, kCmpps[insn.imm & 7], true); }
void h_sse_cmppd(Cpu& cpu, const Insn& insn) { packed<double>(cpu, insn, kCmppd[insn.imm & 7], true); }
void h_sse_cmpss(Cpu& cpu, const Insn& insn) { scalar<float>(cpu, insn, kCmpss[insn.imm & 7], true); }
void h_sse_cmpsd(Cpu& cpu, const Insn& insn) { scalar<double>(cpu, insn, kCmpsd[insn.imm & 7], true); }
void h_sse_comisd(Cpu& cpu, const Insn& insn) { compare<true, true>(cpu, insn); }
void h_sse_ucomisd(Cpu& cpu, const Insn& insn) { compare<true, false>(cpu, insn); }
void h_sse_comiss(Cpu& cpu, const Insn& insn) { compare<false, true>(cpu, insn); }
void h_sse_ucomiss(Cpu& cpu, const Insn& insn) { compare<false, false>(cpu, insn); }

// The conversions with an MMX register or a 64-bit memory operand run as
// the matching XMM conversion with the unused lanes zero (which convert
// exactly, raising nothing). CVTPI2PS keeps the destination's upper half.
namespace {
void mmx_convert(Cpu& cpu, const Insn& insn, HostOp op, unsigned source_bytes, bool keep_upper) {
  check_sse(cpu);
  if (uses_mmx(insn)) check_mmx(cpu);
  V128 b = source(cpu, insn, 1, source_bytes == 16);
  if (source_bytes == 8) std::memset(b.b + 8, 0, 8);
  V128 r{};
  commit_flags(cpu, op(r, b, host_mxcsr(cpu.mxcsr)), false);
  if (insn.op[0].kind == OpKind::kXmm && keep_upper) {
    V128 a = load_xmm(cpu, insn.op[0].reg);
    std::memcpy(a.b, r.b, 8);
    r = a;
  }
  store_reg(cpu, insn.op[0], r);
  finish(cpu, insn);
}
}  // namespace

void h_sse_cvtpi2ps(Cpu& cpu, const Insn& insn) { mmx_convert(cpu, insn, host_cvtdq2ps, 8, true); }
void h_sse_cvtps2pi(Cpu& cpu, const Insn& insn) { mmx_convert(cpu, insn, host_cvtps2dq, 8, false); }
void h_sse_cvttps2pi(Cpu& cpu, const Insn& insn) { mmx_convert(cpu, insn, host_cvttps2dq, 8, false); }
void h_sse_cvtpi2pd(Cpu& cpu, const Insn& insn) { mmx_convert(cpu, insn, host_cvtdq2pd, 8, false); }
void h_sse_cvtpd2pi(Cpu& cpu, const Insn& insn) { mmx_convert(cpu, insn, host_cvtpd2dq, 16, false); }
void h_sse_cvttpd2pi(Cpu& cpu, const Insn& insn) { mmx_convert(cpu, insn, host_cvttpd2dq, 16, false); }

// CVTSI2SD/CVTSI2SS from a 32- or 64-bit integer (inexact under the guest's rounding).
namespace {
template <bool kDouble>
void convert_from_int(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const uint64_t v = read_op(cpu, insn, 1);
  const V128 a = load_xmm(cpu, insn.op[0].reg);
  __m128i x;
  std::memcpy(&x, a.b, 16);
  uint32_t saved, out, mxcsr = host_mxcsr(cpu.mxcsr);
#define HV_CONVERT(text, value)                                                                                 \
  asm volatile("stmxcsr %[saved]\n\tldmxcsr %[in]\n\t" text " %[v], %[x]\n\tstmxcsr %[out]\n\tldmxcsr %[saved]" \
               : [x] "+x"(x), [saved] "=m"(saved), [out] "=m"(out)                                              \
               : [v] "r"(value), [in] "m"(mxcsr))
  if (insn.op[1].size == 8) {
    const int64_t i = static_cast<int64_t>(v);
    if constexpr (kDouble) {
      HV_CONVERT("cvtsi2sdq", i);
    } else {
      HV_CONVERT("cvtsi2ssq", i);
    }
  } else {
    const int32_t i = static_cast<int32_t>(v);
    if constexpr (kDouble) {
      HV_CONVERT("cvtsi2sdl", i);
    } else {
      HV_CONVERT("cvtsi2ssl", i);
    }
  }
#undef HV_CONVERT
  commit_flags(cpu, out & kMxcsrFlags, false);
  V128 r;
  std::memcpy(r.b, &x, 16);
  store_xmm(cpu, insn.op[0].reg, r);
}

// CVTSD2SI/CVTSS2SI (MXCSR rounding) and CVTTSD2SI/CVTTSS2SI (truncation):
// NaN and out-of-range give the integer indefinite value with invalid raised.
template <bool kDouble, bool kTruncate>
void convert_to_int(Cpu& cpu, const Insn& insn) {
  check_sse(cpu);
  const V128 b = source(cpu, insn, 1, false);
  __m128i y;
  std::memcpy(&y, b.b, 16);
  uint32_t saved, out, mxcsr = host_mxcsr(cpu.mxcsr);
  uint64_t result;
#define HV_CONVERT(text, type)                                                                                    \
  {                                                                                                               \
    type r;                                                                                                       \
    asm volatile("stmxcsr %[saved]\n\tldmxcsr %[in]\n\t" text " %[y], %[r]\n\tstmxcsr %[out]\n\tldmxcsr %[saved]" \
                 : [r] "=r"(r), [saved] "=m"(saved), [out] "=m"(out)                                              \
                 : [y] "x"(y), [in] "m"(mxcsr));                                                                  \
    result = static_cast<uint64_t>(r);                                                                            \
  }
  if (insn.op[0].size == 8) {
    if constexpr (kDouble && kTruncate) {
      HV_CONVERT("cvttsd2siq", int64_t)
    } else if constexpr (kDouble) {
      HV_CONVERT("cvtsd2siq", int64_t)
    } else if constexpr (kTruncate) {
      HV_CONVERT("cvttss2siq", int64_t)
    } else {
      HV_CONVERT("cvtss2siq", int64_t)
    }
  } else {
    if constexpr (kDouble && kTruncate) {
      HV_CONVERT("cvttsd2sil", uint32_t)
    } else if constexpr (kDouble) {
      HV_CONVERT("cvtsd2sil", uint32_t)
    } else if constexpr (kTruncate) {
      HV_CONVERT("cvttss2sil", uint32_t)
    } else {
      HV_CONVERT("cvtss2sil", uint32_t)
    }
  }
#undef HV_CONVERT
  commit_flags(cpu, out & kMxcsrFlags, false);
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, result);
}
}  // namespace

void h_sse_cvtsi2sd(Cpu& cpu, const Insn& insn) { convert_from_int<true>(cpu, insn); }
void h_sse_cvtsi2ss(Cpu& cpu, const Insn& insn) { convert_from_int<false>(cpu, insn); }
void h_sse_cvttsd2si(Cpu& cpu, const Insn& insn) { convert_to_int<true, true>(cpu, insn); }
void h_sse_cvttss2si(Cpu& cpu, const Insn& insn) { convert_to_int<false, true>(cpu, insn); }
void h_sse_cvtsd2si(Cpu& cpu, const Insn& insn) { convert_to_int<true, false>(cpu, insn); }
void h_sse_cvtss2si(Cpu& cpu, const Insn& insn) { convert_to_int<false, false>(cpu, insn); }

}  // namespace hostvisor::emu
