// Differential tests of the floating-point and MMX state: each x87, MMX and
// SSE floating-point form runs natively and on the software CPU from the
// same random x87 state (registers, TOP, tags, control and status words),
// MXCSR and memory operands; the whole x87 state (registers bit for bit,
// status word with C0-C3 and the exception flags, tag word), MXCSR, the
// buffers, RAX and the arithmetic flags must agree. Inputs are biased toward
// the values where floating-point bugs live: signed zeros, denormals and
// pseudo-denormals, unnormals, infinities, quiet and signalling NaNs, the
// largest and smallest normals, integer and rounding boundaries, with every
// precision and rounding mode and random exception masks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hv/emu/execute/x87_state.h"
#include "hv/emu/flags.h"
#include "hv/emu/testing/diff_harness.h"
#include "hv/emu/testing/snippet.h"

// The native side: saves the host FPU and MXCSR, loads the FSAVE image, the
// MXCSR, RSI/RDI/RAX and the flags from the state, calls the code, stores
// them back and restores the host FPU. R14/R15 hold the code and state
// pointers. A single-instruction snippet may leave an unmasked x87 exception
// pending: the non-waiting FNSAVE right after it takes it into the image.
extern "C" void hv_emu_fpu_native_exec(void* state, const void* code);
asm(R"(
.text
.globl hv_emu_fpu_native_exec
.type hv_emu_fpu_native_exec, @function
hv_emu_fpu_native_exec:
  push %rbx
  push %rbp
  push %r12
  push %r13
  push %r14
  push %r15
  sub $136, %rsp
  fnsave (%rsp)
  stmxcsr 112(%rsp)
  mov %rdi, %r15
  mov %rsi, %r14
  frstor (%r15)
  ldmxcsr 144(%r15)
  mov 112(%r15), %rsi
  mov 120(%r15), %rdi
  mov 128(%r15), %rax
  pushq 136(%r15)
  popfq
  call *%r14
  pushfq
  popq 136(%r15)
  cld
  mov %rax, 128(%r15)
  stmxcsr 144(%r15)
  fnsave (%r15)
  ldmxcsr 112(%rsp)
  frstor (%rsp)
  add $136, %rsp
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret
.size hv_emu_fpu_native_exec, .-hv_emu_fpu_native_exec
)");

namespace hostvisor::emu {
namespace {

using testing::DiffHarness;
using testing::TestMachine;

struct NativeState {
  uint8_t fsave[112];
  uint64_t rsi, rdi, rax, rflags;
  uint32_t mxcsr;
};
static_assert(offsetof(NativeState, rsi) == 112 && offsetof(NativeState, rflags) == 136 &&
              offsetof(NativeState, mxcsr) == 144);

constexpr size_t kBufSize = 512;  // room for an FXSAVE area
constexpr uint64_t kGuestSrc = testing::kDiffGuestSrc, kGuestDst = testing::kDiffGuestDst;

// What the source buffer holds: values of this type at offsets 0, 16, 32, ...
enum class Input : uint8_t { kNone, kF32, kF64, kF80, kI16, kI32, kI64, kBcd, kEnv, kFxsave, kRandom };

enum Flags : unsigned {
  kSequence = 1,    // several FP instructions: exceptions stay masked so the native run cannot trap
  kSkipEnvPtr = 2,  // the destination holds an x87 environment: its pointer fields name host addresses
  kSse = 4,         // SSE: random MXCSR rounding/DAZ/FTZ, exceptions masked
  kSkipEnvPtr16 = 8,
  kFxsaveArea = 16,  // the destination holds an FXSAVE image: compare the x87 part and MXCSR only
};

struct Case {
  const char* name;
  std::span<const uint8_t> (*code)();
  Input input;
  unsigned flags = 0;
};

#define SNIP(name, text) HV_EMU_SNIPPET(fpu_##name, text)
// clang-format off
// ---- loads and stores ----
SNIP(fld_m32, "fld dword ptr [rsi]")
SNIP(fld_m64, "fld qword ptr [rsi]")
SNIP(fld_m80, "fld tbyte ptr [rsi]")
SNIP(fld_st3, "fld st(3)")
SNIP(fst_m32, "fst dword ptr [rdi]")
SNIP(fst_m64, "fst qword ptr [rdi]")
SNIP(fstp_m32, "fstp dword ptr [rdi]")
SNIP(fstp_m64, "fstp qword ptr [rdi + 8]")
SNIP(fstp_m80, "fstp tbyte ptr [rdi]")
SNIP(fst_st5, "fst st(5)")
SNIP(fstp_st2, "fstp st(2)")
SNIP(fild_m16, "fild word ptr [rsi]")
SNIP(fild_m32, "fild dword ptr [rsi]")
SNIP(fild_m64, "fild qword ptr [rsi]")
SNIP(fist_m16, "fist word ptr [rdi]")
SNIP(fist_m32, "fist dword ptr [rdi]")
SNIP(fistp_m16, "fistp word ptr [rdi]")
SNIP(fistp_m32, "fistp dword ptr [rdi]")
SNIP(fistp_m64, "fistp qword ptr [rdi]")
SNIP(fisttp_m16, "fisttp word ptr [rdi]")
SNIP(fisttp_m32, "fisttp dword ptr [rdi]")
SNIP(fisttp_m64, "fisttp qword ptr [rdi]")
SNIP(fbld, "fbld tbyte ptr [rsi]")
SNIP(fbstp, "fbstp tbyte ptr [rdi]")
SNIP(fld1, "fld1")
SNIP(fldz, "fldz")
SNIP(fldpi, "fldpi")
SNIP(fldl2e, "fldl2e")
SNIP(fldl2t, "fldl2t")
SNIP(fldlg2, "fldlg2")
SNIP(fldln2, "fldln2")
SNIP(fxch, "fxch st(3)")
SNIP(fxch1, "fxch")
// ---- arithmetic ----
SNIP(fadd_st0_sti, "fadd st(0), st(2)")
SNIP(fadd_sti_st0, "fadd st(5), st(0)")
SNIP(faddp, "faddp st(1), st(0)")
SNIP(fadd_m32, "fadd dword ptr [rsi]")
SNIP(fadd_m64, "fadd qword ptr [rsi]")
SNIP(fiadd_m16, "fiadd word ptr [rsi]")
SNIP(fiadd_m32, "fiadd dword ptr [rsi]")
SNIP(fsub_st0_sti, "fsub st(0), st(1)")
SNIP(fsub_sti_st0, "fsub st(3), st(0)")
SNIP(fsubp, "fsubp st(2), st(0)")
SNIP(fsub_m64, "fsub qword ptr [rsi]")
SNIP(fisub_m32, "fisub dword ptr [rsi]")
SNIP(fsubr_st0_sti, "fsubr st(0), st(4)")
SNIP(fsubr_sti_st0, "fsubr st(1), st(0)")
SNIP(fsubrp, "fsubrp st(1), st(0)")
SNIP(fsubr_m32, "fsubr dword ptr [rsi]")
SNIP(fisubr_m16, "fisubr word ptr [rsi]")
SNIP(fmul_st0_sti, "fmul st(0), st(1)")
SNIP(fmul_sti_st0, "fmul st(7), st(0)")
SNIP(fmulp, "fmulp st(1), st(0)")
SNIP(fmul_m32, "fmul dword ptr [rsi]")
SNIP(fmul_m64, "fmul qword ptr [rsi]")
SNIP(fimul_m32, "fimul dword ptr [rsi]")
SNIP(fdiv_st0_sti, "fdiv st(0), st(1)")
SNIP(fdiv_sti_st0, "fdiv st(2), st(0)")
SNIP(fdivp, "fdivp st(1), st(0)")
SNIP(fdiv_m64, "fdiv qword ptr [rsi]")
SNIP(fidiv_m16, "fidiv word ptr [rsi]")
SNIP(fdivr_st0_sti, "fdivr st(0), st(3)")
SNIP(fdivr_sti_st0, "fdivr st(1), st(0)")
SNIP(fdivrp, "fdivrp st(1), st(0)")
SNIP(fdivr_m32, "fdivr dword ptr [rsi]")
SNIP(fidivr_m32, "fidivr dword ptr [rsi]")
// ---- compares ----
SNIP(fcom, "fcom st(2)")
SNIP(fcomp, "fcomp st(1)")
SNIP(fcompp, "fcompp")
SNIP(fucom, "fucom st(3)")
SNIP(fucomp, "fucomp st(1)")
SNIP(fucompp, "fucompp")
SNIP(fcom_m32, "fcom dword ptr [rsi]")
SNIP(fcomp_m64, "fcomp qword ptr [rsi]")
SNIP(ficom_m16, "ficom word ptr [rsi]")
SNIP(ficomp_m32, "ficomp dword ptr [rsi]")
SNIP(fcomi, "fcomi st(0), st(2)")
SNIP(fcomip, "fcomip st(0), st(1)")
SNIP(fucomi, "fucomi st(0), st(3)")
SNIP(fucomip, "fucomip st(0), st(1)")
SNIP(ftst, "ftst")
SNIP(fxam, "fxam")
// ---- other arithmetic and transcendental ----
SNIP(fchs, "fchs")
SNIP(fabs, "fabs")
SNIP(fsqrt, "fsqrt")
SNIP(frndint, "frndint")
SNIP(fscale, "fscale")
SNIP(fxtract, "fxtract")
SNIP(fprem, "fprem")
SNIP(fprem1, "fprem1")
SNIP(f2xm1, "f2xm1")
SNIP(fyl2x, "fyl2x")
SNIP(fyl2xp1, "fyl2xp1")
SNIP(fsin, "fsin")
SNIP(fcos, "fcos")
SNIP(fsincos, "fsincos")
SNIP(fptan, "fptan")
SNIP(fpatan, "fpatan")
SNIP(fcmovb, "fcmovb st(0), st(1)")
SNIP(fcmove, "fcmove st(0), st(2)")
SNIP(fcmovbe, "fcmovbe st(0), st(3)")
SNIP(fcmovu, "fcmovu st(0), st(4)")
SNIP(fcmovnb, "fcmovnb st(0), st(5)")
SNIP(fcmovne, "fcmovne st(0), st(6)")
SNIP(fcmovnbe, "fcmovnbe st(0), st(7)")
SNIP(fcmovnu, "fcmovnu st(0), st(1)")
SNIP(ffree, "ffree st(3)")
SNIP(fincstp, "fincstp")
SNIP(fdecstp, "fdecstp")
SNIP(fnop, "fnop")
// ---- control ----
SNIP(fnstsw_ax, "fnstsw ax")
SNIP(fnstsw_m, "fnstsw word ptr [rdi]")
SNIP(fnstcw, "fnstcw word ptr [rdi]")
SNIP(fldcw, "fldcw word ptr [rsi]")
SNIP(fnclex, "fnclex")
SNIP(fninit, "fninit")
SNIP(fnstenv, "fnstenv [rdi]")
SNIP(fnstenv16, ".byte 0x66\n fnstenv [rdi]")
SNIP(fldenv, "fldenv [rsi]")
SNIP(fldenv16, ".byte 0x66\n fldenv [rsi]")
SNIP(fnsave, "fnsave [rdi]")
SNIP(frstor, "frstor [rsi]")
SNIP(frstor16, ".byte 0x66\n frstor [rsi]")
SNIP(fxsave, "fxsave [rdi]")
SNIP(fxsave64, "fxsave64 [rdi]")
SNIP(fxrstor, "fxrstor [rsi]")
SNIP(fxrstor64, "fxrstor64 [rsi]")
// ---- sequences (exceptions masked) ----
SNIP(seq_poly, "fld qword ptr [rsi]\n fld st(0)\n fmul qword ptr [rsi + 16]\n fadd qword ptr [rsi + 32]\n fmulp st(1), st(0)\n fstp qword ptr [rdi]\n fnstsw ax")
SNIP(seq_overflow, "fld1\n fld1\n fld1\n fld1\n fld1\n fld1\n fld1\n fld1\n fld1\n fst qword ptr [rdi]\n fnstsw ax")
SNIP(seq_underflow, "fstp st(0)\n fstp st(0)\n fstp st(0)\n fstp st(0)\n fstp st(0)\n fstp st(0)\n fstp st(0)\n fstp st(0)\n fadd st(0), st(1)\n fistp dword ptr [rdi]")
SNIP(seq_save_restore, "fnsave [rdi]\n fldpi\n fld1\n frstor [rdi]\n fxam\n fnstenv [rdi + 128]")
SNIP(seq_sin_cos, "fld tbyte ptr [rsi]\n fsincos\n fstp tbyte ptr [rdi]\n fstp tbyte ptr [rdi + 16]\n fld tbyte ptr [rsi + 16]\n fptan\n fpatan\n fstp tbyte ptr [rdi + 32]")
SNIP(seq_compare_branch, "fld dword ptr [rsi]\n fcomp dword ptr [rsi + 16]\n fnstsw ax\n sahf\n setb cl\n mov byte ptr [rdi], cl\n fld qword ptr [rsi + 32]\n fucomip st(0), st(1)\n setp byte ptr [rdi + 1]")
// ---- MMX ----
SNIP(mmx_movq, "movq mm0, [rsi]\n movq mm3, mm0\n movq [rdi], mm3\n movq rax, mm3")
SNIP(mmx_movd, "movd mm2, eax\n movd mm5, [rsi]\n movd [rdi], mm2\n movd eax, mm5\n movq mm7, rax")
SNIP(mmx_emms, "movq mm1, [rsi]\n emms")
SNIP(mmx_paddb, "paddb mm0, mm1")
SNIP(mmx_paddw, "paddw mm2, [rsi]")
SNIP(mmx_paddd, "paddd mm3, mm4")
SNIP(mmx_paddq, "paddq mm3, mm4")
SNIP(mmx_paddsb, "paddsb mm0, mm1")
SNIP(mmx_paddsw, "paddsw mm0, [rsi]")
SNIP(mmx_paddusb, "paddusb mm6, mm7")
SNIP(mmx_paddusw, "paddusw mm0, mm1")
SNIP(mmx_psubb, "psubb mm0, mm1")
SNIP(mmx_psubw, "psubw mm1, mm2")
SNIP(mmx_psubd, "psubd mm2, [rsi]")
SNIP(mmx_psubq, "psubq mm2, mm3")
SNIP(mmx_psubsb, "psubsb mm3, mm4")
SNIP(mmx_psubsw, "psubsw mm4, mm5")
SNIP(mmx_psubusb, "psubusb mm5, mm6")
SNIP(mmx_psubusw, "psubusw mm6, [rsi]")
SNIP(mmx_pcmpeqb, "pcmpeqb mm0, mm1")
SNIP(mmx_pcmpeqw, "pcmpeqw mm0, [rsi]")
SNIP(mmx_pcmpeqd, "pcmpeqd mm0, mm2")
SNIP(mmx_pcmpgtb, "pcmpgtb mm1, mm2")
SNIP(mmx_pcmpgtw, "pcmpgtw mm1, mm3")
SNIP(mmx_pcmpgtd, "pcmpgtd mm1, [rsi]")
SNIP(mmx_pand, "pand mm0, mm1")
SNIP(mmx_pandn, "pandn mm0, [rsi]")
SNIP(mmx_por, "por mm2, mm1")
SNIP(mmx_pxor, "pxor mm3, mm3")
SNIP(mmx_psllw, "psllw mm0, mm1")
SNIP(mmx_psllw_i, "psllw mm0, 5")
SNIP(mmx_pslld, "pslld mm1, [rsi]")
SNIP(mmx_pslld_i, "pslld mm1, 31")
SNIP(mmx_psllq, "psllq mm2, mm3")
SNIP(mmx_psllq_i, "psllq mm2, 40")
SNIP(mmx_psrlw, "psrlw mm0, mm1")
SNIP(mmx_psrlw_i, "psrlw mm0, 16")
SNIP(mmx_psrld_i, "psrld mm1, 7")
SNIP(mmx_psrlq, "psrlq mm2, [rsi]")
SNIP(mmx_psrlq_i, "psrlq mm2, 63")
SNIP(mmx_psraw, "psraw mm3, mm4")
SNIP(mmx_psraw_i, "psraw mm3, 9")
SNIP(mmx_psrad, "psrad mm4, [rsi]")
SNIP(mmx_psrad_i, "psrad mm4, 33")
SNIP(mmx_pmullw, "pmullw mm0, mm1")
SNIP(mmx_pmulhw, "pmulhw mm0, [rsi]")
SNIP(mmx_pmulhuw, "pmulhuw mm2, mm3")
SNIP(mmx_pmuludq, "pmuludq mm2, mm3")
SNIP(mmx_pmaddwd, "pmaddwd mm4, mm5")
SNIP(mmx_packsswb, "packsswb mm0, mm1")
SNIP(mmx_packssdw, "packssdw mm0, [rsi]")
SNIP(mmx_packuswb, "packuswb mm2, mm3")
SNIP(mmx_punpcklbw, "punpcklbw mm0, mm1")
SNIP(mmx_punpcklwd, "punpcklwd mm0, [rsi]")
SNIP(mmx_punpckldq, "punpckldq mm1, mm2")
SNIP(mmx_punpckhbw, "punpckhbw mm2, mm3")
SNIP(mmx_punpckhwd, "punpckhwd mm3, mm4")
SNIP(mmx_punpckhdq, "punpckhdq mm4, [rsi]")
SNIP(mmx_pavgb, "pavgb mm0, mm1")
SNIP(mmx_pavgw, "pavgw mm0, [rsi]")
SNIP(mmx_pminub, "pminub mm1, mm2")
SNIP(mmx_pmaxub, "pmaxub mm1, mm3")
SNIP(mmx_pminsw, "pminsw mm2, mm3")
SNIP(mmx_pmaxsw, "pmaxsw mm2, [rsi]")
SNIP(mmx_psadbw, "psadbw mm3, mm4")
SNIP(mmx_pshufw, "pshufw mm0, mm1, 0x1b")
SNIP(mmx_pextrw, "pextrw eax, mm3, 2")
SNIP(mmx_pinsrw, "pinsrw mm3, eax, 1")
SNIP(mmx_pmovmskb, "pmovmskb eax, mm5")
SNIP(mmx_movntq, "movntq [rdi], mm6")
SNIP(mmx_maskmovq, "maskmovq mm0, mm1")
SNIP(xmm_maskmovdqu, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n maskmovdqu xmm0, xmm1")
SNIP(mmx_cvtpi2ps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n cvtpi2ps xmm0, mm3\n cvtpi2ps xmm1, [rsi + 32]\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm1")
SNIP(mmx_cvtpi2pd, "cvtpi2pd xmm0, mm3\n cvtpi2pd xmm1, [rsi + 32]\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm1")
SNIP(mmx_cvtps2pi, "movdqu xmm0, [rsi]\n cvtps2pi mm1, xmm0\n cvttps2pi mm2, [rsi + 16]")
SNIP(mmx_cvtpd2pi, "movdqu xmm0, [rsi]\n cvtpd2pi mm1, xmm0\n cvttpd2pi mm2, [rsi + 16]")
SNIP(mmx_x87_after, "movq mm0, [rsi]\n paddw mm0, mm0\n emms\n fld qword ptr [rsi + 16]\n fstp qword ptr [rdi]")
// ---- SSE floating point under MXCSR (rounding, DAZ, FTZ, sticky flags) ----
#define SSE2OP(op) "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n " op " xmm0, xmm1\n movdqu [rdi], xmm0"
SNIP(sse_addsd, SSE2OP("addsd"))
SNIP(sse_subsd, SSE2OP("subsd"))
SNIP(sse_mulsd, SSE2OP("mulsd"))
SNIP(sse_divsd, SSE2OP("divsd"))
SNIP(sse_sqrtsd, SSE2OP("sqrtsd"))
SNIP(sse_minsd, SSE2OP("minsd"))
SNIP(sse_maxsd, SSE2OP("maxsd"))
SNIP(sse_addpd, SSE2OP("addpd"))
SNIP(sse_subpd, SSE2OP("subpd"))
SNIP(sse_mulpd, SSE2OP("mulpd"))
SNIP(sse_divpd, SSE2OP("divpd"))
SNIP(sse_minpd, SSE2OP("minpd"))
SNIP(sse_maxpd, SSE2OP("maxpd"))
SNIP(sse_addss, SSE2OP("addss"))
SNIP(sse_subss, SSE2OP("subss"))
SNIP(sse_mulss, SSE2OP("mulss"))
SNIP(sse_divss, SSE2OP("divss"))
SNIP(sse_sqrtss, SSE2OP("sqrtss"))
SNIP(sse_minss, SSE2OP("minss"))
SNIP(sse_maxss, SSE2OP("maxss"))
SNIP(sse_addps, SSE2OP("addps"))
SNIP(sse_subps, SSE2OP("subps"))
SNIP(sse_mulps, SSE2OP("mulps"))
SNIP(sse_divps, SSE2OP("divps"))
SNIP(sse_minps, SSE2OP("minps"))
SNIP(sse_maxps, SSE2OP("maxps"))
SNIP(sse_cvtss2sd, SSE2OP("cvtss2sd"))
SNIP(sse_cvtsd2ss, SSE2OP("cvtsd2ss"))
SNIP(sse_comisd, "movdqu xmm0, [rsi]\n comisd xmm0, [rsi + 16]")
SNIP(sse_ucomisd, "movdqu xmm0, [rsi]\n ucomisd xmm0, [rsi + 16]")
SNIP(sse_comiss, "movdqu xmm0, [rsi]\n comiss xmm0, [rsi + 16]")
SNIP(sse_ucomiss, "movdqu xmm0, [rsi]\n ucomiss xmm0, [rsi + 16]")
SNIP(sse_cvtsi2sd, "movdqu xmm0, [rsi]\n cvtsi2sd xmm0, rax\n movdqu [rdi], xmm0")
SNIP(sse_cvtsi2ss, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n cvtsi2ss xmm0, rax\n cvtsi2ss xmm1, eax\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm1")
SNIP(sse_cvttsd2si, "cvttsd2si rax, [rsi]\n cvttsd2si ecx, [rsi + 16]\n mov [rdi], ecx")
SNIP(sse_cvttss2si, "cvttss2si rax, [rsi]\n cvttss2si ecx, [rsi + 16]\n mov [rdi], ecx")
SNIP(sse_addsd_mem, "movdqu xmm0, [rsi]\n addsd xmm0, [rsi + 16]\n mulsd xmm0, [rsi + 32]\n movdqu [rdi], xmm0")
SNIP(sse_sqrtps, SSE2OP("sqrtps"))
SNIP(sse_sqrtpd, SSE2OP("sqrtpd"))
SNIP(sse_cvtps2pd, SSE2OP("cvtps2pd"))
SNIP(sse_cvtpd2ps, SSE2OP("cvtpd2ps"))
SNIP(sse_cvtdq2ps, SSE2OP("cvtdq2ps"))
SNIP(sse_cvtps2dq, SSE2OP("cvtps2dq"))
SNIP(sse_cvttps2dq, SSE2OP("cvttps2dq"))
SNIP(sse_cvtdq2pd, SSE2OP("cvtdq2pd"))
SNIP(sse_cvtpd2dq, SSE2OP("cvtpd2dq"))
SNIP(sse_cvttpd2dq, SSE2OP("cvttpd2dq"))
SNIP(sse_rcpps, SSE2OP("rcpps"))
SNIP(sse_rsqrtss, SSE2OP("rsqrtss"))
SNIP(sse_cmpps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movdqa xmm2, xmm0\n movdqa xmm3, xmm0\n movdqa xmm4, xmm0\n cmpps xmm0, xmm1, 0\n cmpps xmm2, xmm1, 1\n cmpps xmm3, xmm1, 3\n cmpps xmm4, xmm1, 6\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm2\n movdqu [rdi + 32], xmm3\n movdqu [rdi + 48], xmm4")
SNIP(sse_cmppd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movdqa xmm2, xmm0\n movdqa xmm3, xmm0\n movdqa xmm4, xmm0\n cmppd xmm0, xmm1, 2\n cmppd xmm2, xmm1, 4\n cmppd xmm3, xmm1, 5\n cmppd xmm4, [rsi + 32], 7\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm2\n movdqu [rdi + 32], xmm3\n movdqu [rdi + 48], xmm4")
SNIP(sse_cmpss, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movdqa xmm2, xmm0\n cmpss xmm0, xmm1, 1\n cmpss xmm2, [rsi + 32], 3\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm2")
SNIP(sse_cmpsd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movdqa xmm2, xmm0\n cmpsd xmm0, xmm1, 2\n cmpsd xmm2, [rsi + 32], 4\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm2")
SNIP(sse_cvtsd2si, "cvtsd2si rax, [rsi]\n cvtsd2si ecx, [rsi + 16]\n mov [rdi], ecx")
SNIP(sse_cvtss2si, "cvtss2si rax, [rsi]\n cvtss2si ecx, [rsi + 16]\n mov [rdi], ecx")
SNIP(sse_shufpd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movdqa xmm2, xmm0\n shufpd xmm0, xmm1, 1\n shufpd xmm2, xmm1, 2\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm2")
SNIP(xmm_paddsb, SSE2OP("paddsb"))
SNIP(xmm_paddsw, SSE2OP("paddsw"))
SNIP(xmm_paddusw, SSE2OP("paddusw"))
SNIP(xmm_psubsb, SSE2OP("psubsb"))
SNIP(xmm_psubsw, SSE2OP("psubsw"))
SNIP(xmm_psubusw, SSE2OP("psubusw"))
SNIP(xmm_pmulhw, SSE2OP("pmulhw"))
SNIP(xmm_pmulhuw, SSE2OP("pmulhuw"))
SNIP(xmm_pavgb, SSE2OP("pavgb"))
SNIP(xmm_pavgw, SSE2OP("pavgw"))
SNIP(xmm_pminsw, SSE2OP("pminsw"))
SNIP(xmm_pmaxsw, SSE2OP("pmaxsw"))
SNIP(xmm_packsswb, SSE2OP("packsswb"))
SNIP(xmm_packssdw, SSE2OP("packssdw"))
SNIP(xmm_packuswb, SSE2OP("packuswb"))
SNIP(xmm_pmaddwd, SSE2OP("pmaddwd"))
SNIP(xmm_psadbw, SSE2OP("psadbw"))
SNIP(xmm_pextrw_pinsrw, "movdqu xmm0, [rsi]\n pextrw eax, xmm0, 5\n pinsrw xmm0, eax, 2\n pinsrw xmm0, word ptr [rsi + 20], 7\n movdqu [rdi], xmm0")
SNIP(xmm_movq2dq, "movq mm3, [rsi]\n movdqu xmm1, [rsi + 16]\n movq2dq xmm1, mm3\n movdq2q mm4, xmm1\n movdqu [rdi], xmm1")
// clang-format on
#undef SSE2OP

#define X(n, input, ...) \
  Case { #n, fpu_##n, Input::input, ##__VA_ARGS__ }

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      X(fld_m32, kF32),
      X(fld_m64, kF64),
      X(fld_m80, kF80),
      X(fld_st3, kNone),
      X(fst_m32, kNone),
      X(fst_m64, kNone),
      X(fstp_m32, kNone),
      X(fstp_m64, kNone),
      X(fstp_m80, kNone),
      X(fst_st5, kNone),
      X(fstp_st2, kNone),
      X(fild_m16, kI16),
      X(fild_m32, kI32),
      X(fild_m64, kI64),
      X(fist_m16, kNone),
      X(fist_m32, kNone),
      X(fistp_m16, kNone),
      X(fistp_m32, kNone),
      X(fistp_m64, kNone),
      X(fisttp_m16, kNone),
      X(fisttp_m32, kNone),
      X(fisttp_m64, kNone),
      X(fbld, kBcd),
      X(fbstp, kNone),
      X(fld1, kNone),
      X(fldz, kNone),
      X(fldpi, kNone),
      X(fldl2e, kNone),
      X(fldl2t, kNone),
      X(fldlg2, kNone),
      X(fldln2, kNone),
      X(fxch, kNone),
      X(fxch1, kNone),
      X(fadd_st0_sti, kNone),
      X(fadd_sti_st0, kNone),
      X(faddp, kNone),
      X(fadd_m32, kF32),
      X(fadd_m64, kF64),
      X(fiadd_m16, kI16),
      X(fiadd_m32, kI32),
      X(fsub_st0_sti, kNone),
      X(fsub_sti_st0, kNone),
      X(fsubp, kNone),
      X(fsub_m64, kF64),
      X(fisub_m32, kI32),
      X(fsubr_st0_sti, kNone),
      X(fsubr_sti_st0, kNone),
      X(fsubrp, kNone),
      X(fsubr_m32, kF32),
      X(fisubr_m16, kI16),
      X(fmul_st0_sti, kNone),
      X(fmul_sti_st0, kNone),
      X(fmulp, kNone),
      X(fmul_m32, kF32),
      X(fmul_m64, kF64),
      X(fimul_m32, kI32),
      X(fdiv_st0_sti, kNone),
      X(fdiv_sti_st0, kNone),
      X(fdivp, kNone),
      X(fdiv_m64, kF64),
      X(fidiv_m16, kI16),
      X(fdivr_st0_sti, kNone),
      X(fdivr_sti_st0, kNone),
      X(fdivrp, kNone),
      X(fdivr_m32, kF32),
      X(fidivr_m32, kI32),
      X(fcom, kNone),
      X(fcomp, kNone),
      X(fcompp, kNone),
      X(fucom, kNone),
      X(fucomp, kNone),
      X(fucompp, kNone),
      X(fcom_m32, kF32),
      X(fcomp_m64, kF64),
      X(ficom_m16, kI16),
      X(ficomp_m32, kI32),
      X(fcomi, kNone),
      X(fcomip, kNone),
      X(fucomi, kNone),
      X(fucomip, kNone),
      X(ftst, kNone),
      X(fxam, kNone),
      X(fchs, kNone),
      X(fabs, kNone),
      X(fsqrt, kNone),
      X(frndint, kNone),
      X(fscale, kNone),
      X(fxtract, kNone),
      X(fprem, kNone),
      X(fprem1, kNone),
      X(f2xm1, kNone),
      X(fyl2x, kNone),
      X(fyl2xp1, kNone),
      X(fsin, kNone),
      X(fcos, kNone),
      X(fsincos, kNone),
      X(fptan, kNone),
      X(fpatan, kNone),
      X(fcmovb, kNone),
      X(fcmove, kNone),
      X(fcmovbe, kNone),
      X(fcmovu, kNone),
      X(fcmovnb, kNone),
      X(fcmovne, kNone),
      X(fcmovnbe, kNone),
      X(fcmovnu, kNone),
      X(ffree, kNone),
      X(fincstp, kNone),
      X(fdecstp, kNone),
      X(fnop, kNone),
      X(fnstsw_ax, kNone),
      X(fnstsw_m, kNone),
      X(fnstcw, kNone),
      X(fldcw, kI16),
      X(fnclex, kNone),
      X(fninit, kNone),
      X(fnstenv, kNone, kSkipEnvPtr),
      X(fnstenv16, kNone, kSkipEnvPtr16),
      X(fldenv, kEnv),
      X(fldenv16, kEnv),
      X(fnsave, kNone, kSkipEnvPtr),
      X(frstor, kEnv),
      X(frstor16, kEnv),
      X(fxsave, kNone, kFxsaveArea),
      X(fxsave64, kNone, kFxsaveArea),
      X(fxrstor, kFxsave),
      X(fxrstor64, kFxsave),
      X(seq_poly, kF64, kSequence),
      X(seq_overflow, kNone, kSequence),
      X(seq_underflow, kNone, kSequence),
      X(seq_save_restore, kNone, kSequence | kSkipEnvPtr),
      X(seq_sin_cos, kF80, kSequence),
      X(seq_compare_branch, kF32, kSequence),
      X(mmx_movq, kRandom),
      X(mmx_movd, kRandom),
      X(mmx_emms, kRandom),
      X(mmx_paddb, kRandom),
      X(mmx_paddw, kRandom),
      X(mmx_paddd, kRandom),
      X(mmx_paddq, kRandom),
      X(mmx_paddsb, kRandom),
      X(mmx_paddsw, kRandom),
      X(mmx_paddusb, kRandom),
      X(mmx_paddusw, kRandom),
      X(mmx_psubb, kRandom),
      X(mmx_psubw, kRandom),
      X(mmx_psubd, kRandom),
      X(mmx_psubq, kRandom),
      X(mmx_psubsb, kRandom),
      X(mmx_psubsw, kRandom),
      X(mmx_psubusb, kRandom),
      X(mmx_psubusw, kRandom),
      X(mmx_pcmpeqb, kRandom),
      X(mmx_pcmpeqw, kRandom),
      X(mmx_pcmpeqd, kRandom),
      X(mmx_pcmpgtb, kRandom),
      X(mmx_pcmpgtw, kRandom),
      X(mmx_pcmpgtd, kRandom),
      X(mmx_pand, kRandom),
      X(mmx_pandn, kRandom),
      X(mmx_por, kRandom),
      X(mmx_pxor, kRandom),
      X(mmx_psllw, kI64),
      X(mmx_psllw_i, kRandom),
      X(mmx_pslld, kI64),
      X(mmx_pslld_i, kRandom),
      X(mmx_psllq, kI64),
      X(mmx_psllq_i, kRandom),
      X(mmx_psrlw, kI64),
      X(mmx_psrlw_i, kRandom),
      X(mmx_psrld_i, kRandom),
      X(mmx_psrlq, kI64),
      X(mmx_psrlq_i, kRandom),
      X(mmx_psraw, kI64),
      X(mmx_psraw_i, kRandom),
      X(mmx_psrad, kI64),
      X(mmx_psrad_i, kRandom),
      X(mmx_pmullw, kRandom),
      X(mmx_pmulhw, kRandom),
      X(mmx_pmulhuw, kRandom),
      X(mmx_pmuludq, kRandom),
      X(mmx_pmaddwd, kRandom),
      X(mmx_packsswb, kRandom),
      X(mmx_packssdw, kRandom),
      X(mmx_packuswb, kRandom),
      X(mmx_punpcklbw, kRandom),
      X(mmx_punpcklwd, kRandom),
      X(mmx_punpckldq, kRandom),
      X(mmx_punpckhbw, kRandom),
      X(mmx_punpckhwd, kRandom),
      X(mmx_punpckhdq, kRandom),
      X(mmx_pavgb, kRandom),
      X(mmx_pavgw, kRandom),
      X(mmx_pminub, kRandom),
      X(mmx_pmaxub, kRandom),
      X(mmx_pminsw, kRandom),
      X(mmx_pmaxsw, kRandom),
      X(mmx_psadbw, kRandom),
      X(mmx_pshufw, kRandom),
      X(mmx_pextrw, kRandom),
      X(mmx_pinsrw, kRandom),
      X(mmx_pmovmskb, kRandom),
      X(mmx_maskmovq, kRandom),
      X(xmm_maskmovdqu, kRandom),
      X(mmx_cvtpi2ps, kI32, kSse),
      X(mmx_cvtpi2pd, kI32, kSse),
      X(mmx_cvtps2pi, kF32, kSse),
      X(mmx_cvtpd2pi, kF64, kSse),
      X(mmx_movntq, kRandom),
      X(mmx_x87_after, kF64, kSequence),
      X(sse_addsd, kF64, kSse),
      X(sse_subsd, kF64, kSse),
      X(sse_mulsd, kF64, kSse),
      X(sse_divsd, kF64, kSse),
      X(sse_sqrtsd, kF64, kSse),
      X(sse_minsd, kF64, kSse),
      X(sse_maxsd, kF64, kSse),
      X(sse_addpd, kF64, kSse),
      X(sse_subpd, kF64, kSse),
      X(sse_mulpd, kF64, kSse),
      X(sse_divpd, kF64, kSse),
      X(sse_minpd, kF64, kSse),
      X(sse_maxpd, kF64, kSse),
      X(sse_addss, kF32, kSse),
      X(sse_subss, kF32, kSse),
      X(sse_mulss, kF32, kSse),
      X(sse_divss, kF32, kSse),
      X(sse_sqrtss, kF32, kSse),
      X(sse_minss, kF32, kSse),
      X(sse_maxss, kF32, kSse),
      X(sse_addps, kF32, kSse),
      X(sse_subps, kF32, kSse),
      X(sse_mulps, kF32, kSse),
      X(sse_divps, kF32, kSse),
      X(sse_minps, kF32, kSse),
      X(sse_maxps, kF32, kSse),
      X(sse_cvtss2sd, kF32, kSse),
      X(sse_cvtsd2ss, kF64, kSse),
      X(sse_comisd, kF64, kSse),
      X(sse_ucomisd, kF64, kSse),
      X(sse_comiss, kF32, kSse),
      X(sse_ucomiss, kF32, kSse),
      X(sse_cvtsi2sd, kF64, kSse),
      X(sse_cvtsi2ss, kF32, kSse),
      X(sse_cvttsd2si, kF64, kSse),
      X(sse_cvttss2si, kF32, kSse),
      X(sse_addsd_mem, kF64, kSse),
      X(sse_sqrtps, kF32, kSse),
      X(sse_sqrtpd, kF64, kSse),
      X(sse_cvtps2pd, kF32, kSse),
      X(sse_cvtpd2ps, kF64, kSse),
      X(sse_cvtdq2ps, kI32, kSse),
      X(sse_cvtps2dq, kF32, kSse),
      X(sse_cvttps2dq, kF32, kSse),
      X(sse_cvtdq2pd, kI32, kSse),
      X(sse_cvtpd2dq, kF64, kSse),
      X(sse_cvttpd2dq, kF64, kSse),
      X(sse_rcpps, kF32, kSse),
      X(sse_rsqrtss, kF32, kSse),
      X(sse_cmpps, kF32, kSse),
      X(sse_cmppd, kF64, kSse),
      X(sse_cmpss, kF32, kSse),
      X(sse_cmpsd, kF64, kSse),
      X(sse_cvtsd2si, kF64, kSse),
      X(sse_cvtss2si, kF32, kSse),
      X(sse_shufpd, kF64, kSse),
      X(xmm_paddsb, kRandom),
      X(xmm_paddsw, kRandom),
      X(xmm_paddusw, kRandom),
      X(xmm_psubsb, kRandom),
      X(xmm_psubsw, kRandom),
      X(xmm_psubusw, kRandom),
      X(xmm_pmulhw, kRandom),
      X(xmm_pmulhuw, kRandom),
      X(xmm_pavgb, kRandom),
      X(xmm_pavgw, kRandom),
      X(xmm_pminsw, kRandom),
      X(xmm_pmaxsw, kRandom),
      X(xmm_packsswb, kRandom),
      X(xmm_packssdw, kRandom),
      X(xmm_packuswb, kRandom),
      X(xmm_pmaddwd, kRandom),
      X(xmm_psadbw, kRandom),
      X(xmm_pextrw_pinsrw, kRandom),
      X(xmm_movq2dq, kRandom),
  };
  return all;
}

// ---- edge-biased values ----

uint64_t edge_integer(std::mt19937_64& rng) {
  static const uint64_t kEdges[] = {0,
                                    1,
                                    ~0ull,
                                    0x7f,
                                    0x80,
                                    0xff,
                                    0x7fff,
                                    0x8000,
                                    0xffff,
                                    0x7fffffff,
                                    0x80000000,
                                    0xffffffff,
                                    0x7fffffffffffffff,
                                    0x8000000000000000,
                                    ~0ull - 1,
                                    0x8001};
  switch (rng() % 6) {
    case 0: return kEdges[rng() % std::size(kEdges)];
    case 1: return rng() % 17;
    case 2: return 1ull << (rng() % 64);
    case 3: return -(rng() % 17);
    case 4: return static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(rng())));
    default: return rng();
  }
}

// An 80-bit extended value as raw bytes.
void make_f80(uint8_t* out, uint64_t mantissa, unsigned sign_exponent) {
  std::memcpy(out, &mantissa, 8);
  const uint16_t se = static_cast<uint16_t>(sign_exponent);
  std::memcpy(out + 8, &se, 2);
}

void edge_f80(std::mt19937_64& rng, uint8_t* out) {
  const unsigned sign = (rng() & 1) << 15;
  const uint64_t j = 1ull << 63;
  const uint64_t frac = rng() & (j - 1);
  switch (rng() % 16) {
    case 0: make_f80(out, 0, sign); break;                                        // signed zero
    case 1: make_f80(out, frac >> (rng() % 63), sign); break;                     // denormal
    case 2: make_f80(out, j | frac, sign); break;                                 // pseudo-denormal
    case 3: make_f80(out, j, sign | 0x7fff); break;                               // infinity
    case 4: make_f80(out, j | (1ull << 62) | (frac >> 1), sign | 0x7fff); break;  // QNaN
    case 5: make_f80(out, j | ((frac >> 1) | 1), sign | 0x7fff); break;           // SNaN
    case 6: make_f80(out, j | (1ull << 62), 0xffff); break;                       // indefinite
    case 7: make_f80(out, frac, sign | (1 + rng() % 0x7ffe)); break;              // unnormal / pseudo
    case 8: make_f80(out, j | frac, sign | (0x7ffe - rng() % 70)); break;         // huge
    case 9: make_f80(out, j | frac, sign | (1 + rng() % 70)); break;              // tiny
    case 10: {  // integers and halves around the integer-conversion boundaries
      static const long double kBounds[] = {0.5L,
                                            1.5L,
                                            2.5L,
                                            32767.5L,
                                            32768.0L,
                                            2147483647.5L,
                                            2147483648.0L,
                                            9223372036854775807.0L,
                                            9223372036854775808.0L,
                                            1e18L,
                                            65535.0L};
      long double v = kBounds[rng() % std::size(kBounds)] + static_cast<long double>(static_cast<int>(rng() % 5) - 2);
      if (sign) v = -v;
      std::memcpy(out, &v, 10);
      break;
    }
    case 11: {  // around multiples of pi/2 (FPREM, FSIN, FPTAN reduction)
      long double v = 1.5707963267948966192313216916397514L * static_cast<long double>(rng() % 40);
      v += static_cast<long double>(static_cast<int>(rng() % 3) - 1) * 1e-18L;
      if (sign) v = -v;
      std::memcpy(out, &v, 10);
      break;
    }
    case 12: make_f80(out, j | frac, sign | (0x3fff - 70 + rng() % 140)); break;          // moderate
    case 13: make_f80(out, j | frac, sign | (0x3fff + 62 + rng() % 4)); break;            // near 2^63 (FSIN range)
    case 14: make_f80(out, j | (frac & ~0xffffull), sign | (0x3ffe + rng() % 3)); break;  // near 1
    default: make_f80(out, rng(), static_cast<unsigned>(rng())); break;
  }
}

uint64_t edge_f64(std::mt19937_64& rng) {
  const uint64_t sign = (rng() & 1) << 63;
  const uint64_t frac = rng() & ((1ull << 52) - 1);
  switch (rng() % 12) {
    case 0: return sign;
    case 1: return sign | (frac >> (rng() % 52));                         // denormal
    case 2: return sign | (0x7ffull << 52);                               // infinity
    case 3: return sign | (0x7ffull << 52) | (1ull << 51) | (frac >> 1);  // QNaN
    case 4: return sign | (0x7ffull << 52) | ((frac >> 1) | 1);           // SNaN
    case 5: return sign | (uint64_t{0x7fe - rng() % 40} << 52) | frac;    // huge
    case 6: return sign | (uint64_t{1 + rng() % 40} << 52) | frac;        // tiny normal
    case 7: {
      double v = static_cast<double>(static_cast<int64_t>(edge_integer(rng))) + ((rng() & 1) ? 0.5 : 0.0);
      uint64_t b;
      std::memcpy(&b, &v, 8);
      return b;
    }
    case 8: return sign | (uint64_t{0x3ff - 30 + rng() % 60} << 52) | (frac & ~0xfffull);  // few bits: exact results
    default: return sign | (uint64_t{0x3ff - 60 + rng() % 120} << 52) | frac;
  }
}

uint32_t edge_f32(std::mt19937_64& rng) {
  const uint32_t sign = static_cast<uint32_t>(rng() & 1) << 31;
  const uint32_t frac = static_cast<uint32_t>(rng()) & ((1u << 23) - 1);
  switch (rng() % 12) {
    case 0: return sign;
    case 1: return sign | (frac >> (rng() % 23));
    case 2: return sign | (0xffu << 23);
    case 3: return sign | (0xffu << 23) | (1u << 22) | (frac >> 1);
    case 4: return sign | (0xffu << 23) | ((frac >> 1) | 1);
    case 5: return sign | (static_cast<uint32_t>(0xfe - rng() % 20) << 23) | frac;
    case 6: return sign | (static_cast<uint32_t>(1 + rng() % 20) << 23) | frac;
    case 7: {
      float v = static_cast<float>(static_cast<int32_t>(edge_integer(rng))) + ((rng() & 1) ? 0.5f : 0.0f);
      uint32_t b;
      std::memcpy(&b, &v, 4);
      return b;
    }
    case 8: return sign | (static_cast<uint32_t>(127 - 20 + rng() % 40) << 23) | (frac & ~0xffu);
    default: return sign | (static_cast<uint32_t>(127 - 30 + rng() % 60) << 23) | frac;
  }
}

void fill_random(std::mt19937_64& rng, uint8_t* buffer) {
  for (size_t i = 0; i < kBufSize; i += 8) {
    const uint64_t v = rng();
    std::memcpy(buffer + i, &v, 8);
  }
}

void fill_source(const Case& c, std::mt19937_64& rng, uint8_t* src) {
  fill_random(rng, src);
  for (unsigned slot = 0; slot < kBufSize / 16; ++slot) {
    uint8_t* p = src + 16 * slot;
    switch (c.input) {
      case Input::kF32:
        for (int k = 0; k < 4; ++k) {
          const uint32_t v = edge_f32(rng);
          std::memcpy(p + 4 * k, &v, 4);
        }
        break;
      case Input::kF64:
        for (int k = 0; k < 2; ++k) {
          const uint64_t v = edge_f64(rng);
          std::memcpy(p + 8 * k, &v, 8);
        }
        break;
      case Input::kF80: edge_f80(rng, p); break;
      case Input::kI16:
      case Input::kI32:
      case Input::kI64: {
        const uint64_t v = edge_integer(rng);
        std::memcpy(p, &v, 8);
        break;
      }
      case Input::kBcd: {
        for (int k = 0; k < 9; ++k) {
          unsigned lo = rng() % 10, hi = rng() % 10;
          if (rng() % 20 == 0) lo = 10 + rng() % 6;  // an invalid digit now and then
          p[k] = static_cast<uint8_t>(hi << 4 | lo);
        }
        p[9] = (rng() & 1) ? 0x80 : 0;
        break;
      }
      default: break;
    }
  }
}

// A random but consistent x87 state: every register, TOP, tags, C0-C3 and
// masked sticky flags (a pending unmasked exception would trap natively).
FsaveImage random_x87_state(const Case& c, std::mt19937_64& rng) {
  X87State x;
  for (auto& r : x.st) edge_f80(rng, r);
  const unsigned precision = rng() % 4, rounding = rng() % 4;
  uint16_t masks = kFswExceptions;
  if (!(c.flags & (kSequence | kSse)) && rng() % 3 == 0) masks = static_cast<uint16_t>(rng() & kFswExceptions);
  x.fcw = static_cast<uint16_t>(0x40 | masks | precision << 8 | rounding << 10 | (rng() & 0x1000));
  switch (rng() % 6) {
    case 0: x.ftw = 0xff; break;  // full: pushes overflow
    case 1: x.ftw = 0; break;     // empty: reads underflow
    default: x.ftw = static_cast<uint8_t>(rng() | rng()); break;
  }
  x.fsw = static_cast<uint16_t>((rng() & (kFswC0 | kFswC1 | kFswC2 | kFswC3)) | (rng() & masks & kFswExceptions));
  x87_set_top(x, static_cast<unsigned>(rng()));
  return x87_to_fsave(x);
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string hex_bytes(const uint8_t* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (size_t i = n; i-- > 0;) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

class FpuDiffTest : public ::testing::TestWithParam<Case> {};

TEST_P(FpuDiffTest, MatchesHostCpu) {
  const Case& c = GetParam();
  DiffHarness harness(c.code());
  ASSERT_TRUE(harness.ok()) << "mmap of an executable page failed";
  const void* native_code = harness.native_code();
  TestMachine& m = harness.machine();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  alignas(64) static uint8_t src[kBufSize], dst[kBufSize];
  constexpr int kIterations = 1000;
  for (int iter = 0; iter < kIterations; ++iter) {
    fill_source(c, rng, src);
    fill_random(rng, dst);
    NativeState in{};
    const FsaveImage image = random_x87_state(c, rng);
    std::memcpy(in.fsave, image.b, sizeof(image.b));
    if (c.input == Input::kEnv) {
      // FLDENV/FRSTOR images: a random consistent state's environment and registers, in
      // the 32-bit or (for the 16-bit forms) the 14-byte layout.
      FsaveImage loaded = random_x87_state(c, rng);
      if (rng() % 4 == 0) {  // a status word that disagrees with the masks (pending exceptions, ES, B)
        loaded.b[4] = static_cast<uint8_t>(rng());
        loaded.b[5] = static_cast<uint8_t>((loaded.b[5] & 0x38) | (rng() & 0xc7));
      }
      if (std::string(c.name).ends_with("16")) {
        for (int k = 0; k < 7; ++k) std::memcpy(src + 2 * k, loaded.b + 4 * k, 2);
        std::memcpy(src + 14, loaded.b + 28, 80);
      } else {
        std::memcpy(src, loaded.b, sizeof(loaded.b));
      }
    }
    if (c.input == Input::kFxsave) {
      // An FXSAVE image of a random state (abridged tag byte, registers in stack order, a
      // valid MXCSR); the XMM part stays random.
      const FsaveImage loaded = random_x87_state(c, rng);
      std::memcpy(src, loaded.b, 4);  // FCW, FSW
      src[4] = x87_abridged_tag_word(static_cast<uint16_t>(loaded.b[8] | loaded.b[9] << 8));
      src[5] = 0;
      const uint32_t mxcsr = static_cast<uint32_t>(0x1f80 | (rng() & 0x3f) | (rng() % 4) << 13);
      std::memcpy(src + 24, &mxcsr, 4);
      for (int i = 0; i < 8; ++i) {
        std::memcpy(src + 32 + 16 * i, loaded.b + 28 + 10 * i, 10);
        std::memset(src + 42 + 16 * i, 0, 6);
      }
      if (rng() % 4 == 0) src[2] = static_cast<uint8_t>(rng());  // flags that may disagree with the masks
    }
    in.rax = edge_integer(rng);
    in.rflags = 0x202 | (rng() & kArithFlags);
    in.mxcsr = 0x1f80;
    if (c.flags & kSse) {
      in.mxcsr = static_cast<uint32_t>(0x1f80 | (rng() & 0x3f) | (rng() % 4) << 13);
      if (rng() & 1) in.mxcsr |= 1u << 15;  // FTZ
      if (rng() & 1) in.mxcsr |= 1u << 6;   // DAZ
    }
    m.write(kGuestSrc, src);
    m.write(kGuestDst, dst);

    // Emulated.
    Cpu& cpu = m.cpu();
    x87_registers_from_fsave(cpu.x87, image);
    cpu.mxcsr = in.mxcsr;
    cpu.gpr[0] = in.rax;
    cpu.gpr[1] = 0;
    cpu.gpr[6] = kGuestSrc;
    cpu.gpr[7] = kGuestDst;
    write_flags(cpu, in.rflags);
    ASSERT_TRUE(harness.run_emulated(c.name));

    // Native.
    NativeState out = in;
    out.rsi = reinterpret_cast<uint64_t>(src);
    out.rdi = reinterpret_cast<uint64_t>(dst);
    hv_emu_fpu_native_exec(&out, native_code);

    const FsaveImage got = x87_to_fsave(cpu.x87);
    auto context = [&] {
      std::string s = std::string(c.name) + " iteration " + std::to_string(iter) +
                      ": input fcw=" + hex_bytes(image.b, 2) + " fsw=" + hex_bytes(image.b + 4, 2) +
                      " ftw=" + hex_bytes(image.b + 8, 2) +
                      " mxcsr=" + hex_bytes(reinterpret_cast<const uint8_t*>(&in.mxcsr), 4) + "\n";
      for (int i = 0; i < 8; ++i) s += "  st" + std::to_string(i) + "=" + hex_bytes(image.b + 28 + 10 * i, 10);
      s += "\n  src=" + hex_bytes(src, 16) + " " + hex_bytes(src + 16, 16);
      return s;
    };
    EXPECT_EQ(hex_bytes(got.b, 2), hex_bytes(out.fsave, 2)) << "FCW; " << context();
    EXPECT_EQ(hex_bytes(got.b + 4, 2), hex_bytes(out.fsave + 4, 2)) << "FSW; " << context();
    EXPECT_EQ(hex_bytes(got.b + 8, 2), hex_bytes(out.fsave + 8, 2)) << "tag word; " << context();
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(hex_bytes(got.b + 28 + 10 * i, 10), hex_bytes(out.fsave + 28 + 10 * i, 10))
          << "ST(" << i << "); " << context();
    }
    EXPECT_EQ(cpu.mxcsr, out.mxcsr) << "MXCSR; " << context();
    EXPECT_EQ(cpu.gpr[0], out.rax) << "RAX; " << context();
    EXPECT_EQ(read_flags(cpu) & kArithFlags, out.rflags & kArithFlags) << "flags; " << context();
    std::vector<uint8_t> guest_dst(kBufSize);
    ASSERT_TRUE(m.memory().read(GuestAddress(kGuestDst), guest_dst).ok());
    for (size_t i = 0; i < kBufSize; ++i) {
      if (c.flags & kFxsaveArea) {
        // FCW, FSW, tag byte, MXCSR and its mask, the registers: not FOP/FIP/FDP (host
        // addresses natively) nor the XMM registers (host values natively).
        if ((i >= 6 && i < 24) || i >= 160) continue;
      }
      // The environment's instruction/data pointers name host addresses natively.
      const bool env32 = c.flags & kSkipEnvPtr;
      const bool env16 = c.flags & kSkipEnvPtr16;
      const size_t in_env = i >= 128 && (c.flags & kSequence) ? i - 128 : i;
      if (env32 && ((in_env >= 12 && in_env < 24) || (in_env >= 24 && in_env < 26))) continue;
      if (env16 && in_env >= 6 && in_env < 14) continue;
      ASSERT_EQ(guest_dst[i], dst[i]) << "destination byte " << i << "; " << context();
    }
    if (HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Instructions, FpuDiffTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace hostvisor::emu
