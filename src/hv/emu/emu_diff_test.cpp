// Differential tests: each instruction runs natively on the host CPU and on
// the software CPU with the same random inputs; the result registers, the
// memory it touched and every flag the SDM defines for it must agree.
// Inputs are biased toward edge values (0, all-ones, sign boundaries,
// powers of two) where flag bugs live.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hv/emu/flags.h"
#include "hv/emu/testing/diff_harness.h"
#include "hv/emu/testing/snippet.h"

// The native side: loads the registers from a RegState, runs the code (which
// ends in RET) and stores them back. R14/R15 hold the code and state pointers,
// so the instructions under test use only RAX-RDI and R8-R11.
extern "C" void hv_emu_native_exec(void* state, const void* code);
asm(R"(
.text
.globl hv_emu_native_exec
.type hv_emu_native_exec, @function
hv_emu_native_exec:
  push %rbx
  push %rbp
  push %r12
  push %r13
  push %r14
  push %r15
  mov %rdi, %r15
  mov %rsi, %r14
  mov 0(%r15), %rax
  mov 8(%r15), %rbx
  mov 16(%r15), %rcx
  mov 24(%r15), %rdx
  mov 32(%r15), %rsi
  mov 40(%r15), %rdi
  mov 48(%r15), %r8
  mov 56(%r15), %r9
  mov 64(%r15), %r10
  mov 72(%r15), %r11
  pushq 80(%r15)
  popfq
  call *%r14
  pushfq
  popq 80(%r15)
  cld
  mov %rax, 0(%r15)
  mov %rbx, 8(%r15)
  mov %rcx, 16(%r15)
  mov %rdx, 24(%r15)
  mov %rsi, 32(%r15)
  mov %rdi, 40(%r15)
  mov %r8, 48(%r15)
  mov %r9, 56(%r15)
  mov %r10, 64(%r15)
  mov %r11, 72(%r15)
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret
.size hv_emu_native_exec, .-hv_emu_native_exec
)");

namespace hostvisor::emu {
namespace {

using testing::DiffHarness;
using testing::TestMachine;

struct RegState {
  uint64_t rax, rbx, rcx, rdx, rsi, rdi, r8, r9, r10, r11, rflags;
};
constexpr const char* kRegNames[] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"};
constexpr int kEmuIndex[] = {0, 3, 1, 2, 6, 7, 8, 9, 10, 11};  // RegState order -> x86 encoding

uint64_t* reg(RegState& s, int i) { return &s.rax + i; }

// Memory the instructions under test may address: RSI and RDI point into the
// middle of these (natively at the host arrays, emulated at guest addresses).
constexpr size_t kBufSize = 1024;
constexpr uint64_t kGuestSrc = testing::kDiffGuestSrc, kGuestDst = testing::kDiffGuestDst;

enum class Kind {
  kPlain,
  kShift,  // count in CL (or imm), flags rules by count
  kRotate,
  kRotateCarry,
  kDoubleShift,
  kDiv,
  kIdiv,
  kMemory,  // RSI/RDI point into the buffers
  kString,  // RSI/RDI into buffers, RCX small, DF random
};

struct Case {
  const char* name;
  std::span<const uint8_t> (*code)();
  Kind kind;
  unsigned size;             // operand size in bytes
  uint64_t undefined;        // flags the SDM leaves undefined (always)
  int imm_count = -1;        // shift count when it is an immediate
  bool nonzero_rbx = false;  // BSF/BSR: a zero source leaves the destination undefined
};

constexpr uint64_t kAllArith = kArithFlags;
constexpr uint64_t kMulUndef = kFlagSf | kFlagZf | kFlagAf | kFlagPf;
constexpr uint64_t kLogicUndef = kFlagAf;
constexpr uint64_t kBtUndef = kFlagOf | kFlagSf | kFlagAf | kFlagPf;
constexpr uint64_t kBsfUndef = kFlagCf | kFlagOf | kFlagSf | kFlagAf | kFlagPf;

#define SNIP(name, text) HV_EMU_SNIPPET(name, text)
// clang-format off
// ---- ALU ----
SNIP(add8, "add al, bl")
SNIP(add8h, "add ah, bh")
SNIP(add16, "add ax, bx")
SNIP(add32, "add eax, ebx")
SNIP(add64, "add rax, rbx")
SNIP(add64i, "add rax, -5")
SNIP(add32i, "add eax, 0x7fffffff")
SNIP(add8i, "add bl, 0x80")
SNIP(adc8, "adc al, bl")
SNIP(adc16, "adc ax, bx")
SNIP(adc32, "adc eax, ebx")
SNIP(adc64, "adc rax, rbx")
SNIP(sbb8, "sbb al, bl")
SNIP(sbb16, "sbb ax, bx")
SNIP(sbb32, "sbb eax, ebx")
SNIP(sbb64, "sbb rax, rbx")
SNIP(sub8, "sub al, bl")
SNIP(sub16, "sub ax, bx")
SNIP(sub32, "sub eax, ebx")
SNIP(sub64, "sub rax, rbx")
SNIP(sub64i, "sub r8, 0x12345678")
SNIP(cmp8, "cmp al, bl")
SNIP(cmp16, "cmp ax, bx")
SNIP(cmp32, "cmp eax, ebx")
SNIP(cmp64, "cmp rax, rbx")
SNIP(and8, "and al, bl")
SNIP(and32, "and eax, ebx")
SNIP(and64, "and rax, rbx")
SNIP(or16, "or ax, bx")
SNIP(or64, "or rax, rbx")
SNIP(xor8, "xor sil, dil")
SNIP(xor32, "xor eax, ebx")
SNIP(xor64, "xor r9, r10")
SNIP(test8, "test al, bl")
SNIP(test64, "test rax, rbx")
SNIP(test32i, "test eax, 0x80000001")
SNIP(inc8, "inc al")
SNIP(inc16, "inc ax")
SNIP(inc32, "inc eax")
SNIP(inc64, "inc rax")
SNIP(dec8, "dec bh")
SNIP(dec16, "dec bx")
SNIP(dec32, "dec ebx")
SNIP(dec64, "dec r11")
SNIP(neg8, "neg al")
SNIP(neg16, "neg ax")
SNIP(neg32, "neg eax")
SNIP(neg64, "neg rax")
SNIP(not8, "not al")
SNIP(not32, "not eax")
SNIP(not64, "not rax")
// ---- shifts and rotates ----
SNIP(shl8, "shl al, cl")
SNIP(shl16, "shl ax, cl")
SNIP(shl32, "shl eax, cl")
SNIP(shl64, "shl rax, cl")
SNIP(shr8, "shr al, cl")
SNIP(shr16, "shr ax, cl")
SNIP(shr32, "shr eax, cl")
SNIP(shr64, "shr rax, cl")
SNIP(sar8, "sar al, cl")
SNIP(sar16, "sar ax, cl")
SNIP(sar32, "sar eax, cl")
SNIP(sar64, "sar rax, cl")
SNIP(shl64_1, "shl rax, 1")
SNIP(shr32_1, "shr eax, 1")
SNIP(sar16_1, "sar ax, 1")
SNIP(shl8_7, "shl bl, 7")
SNIP(sar64_63, "sar rdx, 63")
SNIP(shl32_5, "shl eax, 5")
SNIP(shr64_33, "shr rbx, 33")
SNIP(sar32_31, "sar ecx, 31")
SNIP(shl64_63, "shl rdx, 63")
SNIP(rol8, "rol al, cl")
SNIP(rol16, "rol ax, cl")
SNIP(rol32, "rol eax, cl")
SNIP(rol64, "rol rax, cl")
SNIP(ror8, "ror al, cl")
SNIP(ror16, "ror ax, cl")
SNIP(ror32, "ror eax, cl")
SNIP(ror64, "ror rax, cl")
SNIP(rol64_1, "rol rax, 1")
SNIP(ror32_1, "ror eax, 1")
SNIP(rcl8, "rcl al, cl")
SNIP(rcl16, "rcl ax, cl")
SNIP(rcl32, "rcl eax, cl")
SNIP(rcl64, "rcl rax, cl")
SNIP(rcr8, "rcr al, cl")
SNIP(rcr16, "rcr ax, cl")
SNIP(rcr32, "rcr eax, cl")
SNIP(rcr64, "rcr rax, cl")
SNIP(rcl64_1, "rcl rax, 1")
SNIP(rcr8_1, "rcr bl, 1")
SNIP(shld16, "shld ax, bx, cl")
SNIP(shld32, "shld eax, ebx, cl")
SNIP(shld64, "shld rax, rbx, cl")
SNIP(shrd16, "shrd ax, bx, cl")
SNIP(shrd32, "shrd eax, ebx, cl")
SNIP(shrd64, "shrd rax, rbx, cl")
SNIP(shld64i, "shld rax, rbx, 13")
SNIP(shrd32i, "shrd eax, ebx, 1")
// ---- multiply and divide ----
SNIP(mul8, "mul bl")
SNIP(mul16, "mul bx")
SNIP(mul32, "mul ebx")
SNIP(mul64, "mul rbx")
SNIP(imul8, "imul bl")
SNIP(imul16, "imul bx")
SNIP(imul32, "imul ebx")
SNIP(imul64, "imul rbx")
SNIP(imul2_16, "imul ax, bx")
SNIP(imul2_32, "imul eax, ebx")
SNIP(imul2_64, "imul rax, rbx")
SNIP(imul3_32, "imul eax, ebx, -7")
SNIP(imul3_64, "imul rax, rbx, 0x12345")
SNIP(imul3_16, "imul ax, bx, 300")
SNIP(div8, "div bl")
SNIP(div16, "div bx")
SNIP(div32, "div ebx")
SNIP(div64, "div rbx")
SNIP(idiv8, "idiv bl")
SNIP(idiv16, "idiv bx")
SNIP(idiv32, "idiv ebx")
SNIP(idiv64, "idiv rbx")
// ---- bit operations ----
SNIP(bt16, "bt ax, bx")
SNIP(bt32, "bt eax, ebx")
SNIP(bt64, "bt rax, rbx")
SNIP(bt64i, "bt rax, 45")
SNIP(bts32, "bts eax, ebx")
SNIP(bts64, "bts rax, rbx")
SNIP(btr16, "btr ax, bx")
SNIP(btr64, "btr rax, rbx")
SNIP(btc32, "btc eax, ebx")
SNIP(btc64i, "btc rax, 63")
SNIP(bsf16, "bsf ax, bx")
SNIP(bsf32, "bsf eax, ebx")
SNIP(bsf64, "bsf rax, rbx")
SNIP(bsr16, "bsr ax, bx")
SNIP(bsr32, "bsr eax, ebx")
SNIP(bsr64, "bsr rax, rbx")
SNIP(popcnt32, "popcnt eax, ebx")
SNIP(popcnt64, "popcnt rax, rbx")
SNIP(bswap32, "bswap eax")
SNIP(bswap64, "bswap r10")
// ---- data movement, conversions, conditions ----
SNIP(movzx8, "movzx eax, bl")
SNIP(movzx16, "movzx rax, bx")
SNIP(movsx8, "movsx rax, bl")
SNIP(movsx16, "movsx eax, bx")
SNIP(movsxd, "movsxd rax, ebx")
SNIP(mov32, "mov eax, ebx")
SNIP(mov8h, "mov ah, bl")
SNIP(mov16, "mov ax, bx")
SNIP(cbw, "cbw")
SNIP(cwde, "cwde")
SNIP(cdqe, "cdqe")
SNIP(cwd, "cwd")
SNIP(cdq, "cdq")
SNIP(cqo, "cqo")
SNIP(lea1, "lea rax, [rbx + rcx*4 + 0x40]")
SNIP(lea2, "lea eax, [rbx + rdx*8 - 1]")
SNIP(lea3, "lea ax, [rbx + rcx]")
SNIP(xchg64, "xchg rax, rbx")
SNIP(xchg8, "xchg al, bh")
SNIP(xchg32, "xchg ecx, edx")
SNIP(cmpxchg8, "cmpxchg bl, cl")
SNIP(cmpxchg32, "cmpxchg ebx, ecx")
SNIP(cmpxchg64, "cmpxchg rbx, rcx")
SNIP(xadd32, "xadd eax, ebx")
SNIP(xadd64, "xadd rax, rbx")
SNIP(xadd8, "xadd al, bl")
SNIP(xadd_same, "xadd rbx, rbx")  // one register as both: the sum wins
SNIP(cmpxchg_same, "cmpxchg rbx, rbx")
SNIP(cmovs, "cmp rax, rbx\n cmovl rcx, rdx\n cmovb r8, r9\n cmovz r10, r11\n cmovnbe esi, edi")
SNIP(cmov32, "test eax, eax\n cmovs ebx, ecx\n cmovp edx, esi\n cmovno edi, r8d")
SNIP(setccs, "cmp rax, rbx\n seto cl\n setno ch\n setb dl\n setae dh\n setz r8b\n setnz r9b\n setbe r10b\n seta r11b")
SNIP(setccs2, "sub eax, ebx\n sets cl\n setns ch\n setp dl\n setnp dh\n setl r8b\n setge r9b\n setle r10b\n setg r11b")
SNIP(setcc_adc, "adc rax, rbx\n setc cl\n seto dl\n sets r8b\n setz r9b\n setp r10b")
SNIP(lahf, "lahf")
SNIP(sahf, "sahf")
SNIP(cmc, "cmc")
SNIP(stc, "stc")
SNIP(clc, "clc")
SNIP(inc_then_adc, "inc rax\n adc rbx, rcx")
SNIP(neg_then_sbb, "neg rax\n sbb rbx, rbx")
// ---- memory operands ----
SNIP(add_mem, "add dword ptr [rsi + 8], eax")
SNIP(sub_from_mem, "sub rax, qword ptr [rsi - 16]")
SNIP(inc_mem, "inc word ptr [rsi]")
SNIP(neg_mem, "neg byte ptr [rsi + 3]")
SNIP(shl_mem, "shl dword ptr [rsi], cl")
SNIP(bt_mem, "bt dword ptr [rsi], ecx")
SNIP(bts_mem, "bts qword ptr [rsi], rcx")
SNIP(btr_mem, "btr word ptr [rsi], cx")
SNIP(btc_mem_i, "btc dword ptr [rsi + 4], 17")
SNIP(xchg_mem, "xchg qword ptr [rsi], rbx")
SNIP(cmpxchg_mem, "cmpxchg dword ptr [rsi], ecx")
SNIP(xadd_mem, "lock xadd qword ptr [rsi + 8], rbx")
SNIP(cmpxchg8b_mem, "cmpxchg8b qword ptr [rsi]")
SNIP(movzx_mem, "movzx eax, byte ptr [rsi + rcx]")
SNIP(mul_mem, "mul qword ptr [rsi]")
SNIP(push_pop_mem, "mov rdx, qword ptr [rsi]\n not rdx\n mov qword ptr [rdi], rdx")
// ---- string instructions ----
SNIP(movsb, "rep movsb")
SNIP(movsq, "rep movsq")
SNIP(movsw1, "movsw")
SNIP(stosb, "rep stosb")
SNIP(stosd, "rep stosd")
SNIP(lodsq, "lodsq")
SNIP(cmpsb, "repe cmpsb")
SNIP(cmpsd, "repne cmpsd")
SNIP(scasb, "repne scasb")
SNIP(scasw, "repe scasw")
// ---- SSE/SSE2 (operands from the source buffer, results stored to the destination) ----
SNIP(sse_pxor, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pxor xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_por, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n por xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pand, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pand xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pandn, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pandn xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_xorps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n xorps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_paddb, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n paddb xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_paddw, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n paddw xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_paddd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n paddd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_paddq, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n paddq xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_psubb, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psubb xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_psubq, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psubq xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pcmpeqb, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pcmpeqb xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pcmpeqd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pcmpeqd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pcmpgtb, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pcmpgtb xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pcmpgtw, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pcmpgtw xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pminub, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pminub xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pmaxub, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pmaxub xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_psubusb, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psubusb xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_paddusb, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n paddusb xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pmullw, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pmullw xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pmuludq, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pmuludq xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_punpcklbw, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n punpcklbw xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_punpckhwd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n punpckhwd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_punpckldq, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n punpckldq xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_punpckhqdq, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n punpckhqdq xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pshufd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pshufd xmm0, xmm1, 0x1b\n movdqu [rdi], xmm0")
SNIP(sse_pshuflw, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pshuflw xmm0, xmm1, 0xb1\n movdqu [rdi], xmm0")
SNIP(sse_pshufhw, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pshufhw xmm0, xmm1, 0x4e\n movdqu [rdi], xmm0")
SNIP(sse_shufps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n shufps xmm0, xmm1, 0x9c\n movdqu [rdi], xmm0")
SNIP(sse_pslldq, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n pslldq xmm0, 5\n movdqu [rdi], xmm0")
SNIP(sse_psrldq, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psrldq xmm0, 11\n movdqu [rdi], xmm0")
SNIP(sse_psllw_i, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psllw xmm0, 3\n movdqu [rdi], xmm0")
SNIP(sse_psrld_i, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psrld xmm0, 17\n movdqu [rdi], xmm0")
SNIP(sse_psraw_i, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psraw xmm0, 9\n movdqu [rdi], xmm0")
SNIP(sse_psrad_x, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psrad xmm0, xmm2\n movdqu [rdi], xmm0")
SNIP(sse_psllq_x, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n psllq xmm0, xmm2\n movdqu [rdi], xmm0")
SNIP(sse_movhlps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n movhlps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_movlhps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n movlhps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_addsd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n addsd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_mulsd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n mulsd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_divsd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n divsd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_subss, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n subss xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_addpd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n addpd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_mulps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n mulps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_sqrtsd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n sqrtsd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_cvtss2sd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n cvtss2sd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_cvtsd2ss, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n cvtsd2ss xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_movss_rr, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n movss xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_movsd_rr, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n movd xmm2, ecx\n movsd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_pmovmskb, "movdqu xmm0, [rsi]\n pcmpeqb xmm0, [rsi + 16]\n pmovmskb eax, xmm0\n movmskps ebx, xmm0\n movmskpd edx, xmm0")
SNIP(sse_movd_movq, "movd xmm0, eax\n movq xmm1, rbx\n movq [rdi], xmm1\n movd [rdi + 8], xmm0\n movq rdx, xmm1\n movd ecx, xmm0\n movq xmm2, [rsi]\n movdqu [rdi + 16], xmm2")
SNIP(sse_movlhps_mem, "movdqu xmm0, [rsi]\n movhps xmm0, [rsi + 40]\n movlps xmm0, [rsi + 48]\n movhpd [rdi], xmm0\n movlpd [rdi + 8], xmm0\n movss xmm1, [rsi + 4]\n movsd xmm2, [rsi + 8]\n movdqu [rdi + 16], xmm1\n movdqu [rdi + 32], xmm2")
SNIP(sse_comisd, "movsd xmm0, [rsi]\n ucomisd xmm0, [rsi + 8]\n seta al\n setb bl\n setz cl\n setp dl")
SNIP(sse_comiss_same, "movss xmm0, [rsi]\n comiss xmm0, xmm0")
SNIP(sse_cvt, "pxor xmm0, xmm0\n pxor xmm1, xmm1\n cvtsi2sd xmm0, rax\n cvtsi2ss xmm1, ebx\n cvttsd2si rcx, xmm0\n cvttss2si edx, xmm1\n cvttsd2si r8, [rsi]\n cvttsd2si r9d, [rsi + 8]\n movdqu [rdi], xmm0\n movdqu [rdi + 16], xmm1")
SNIP(sse_aligned, "movdqa xmm0, [rsi]\n movaps xmm1, [rsi + 32]\n paddd xmm0, xmm1\n movntdq [rdi], xmm0\n movapd [rdi + 16], xmm1")
// Floating-point min/max (NaN and signed-zero operands pick the source), packed sub/div, sqrtss.
SNIP(sse_minsd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n minsd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_maxsd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n maxsd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_minss, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n minss xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_maxss, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n maxss xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_minpd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n minpd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_maxpd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n maxpd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_minps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n minps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_maxps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n maxps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_subpd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n subpd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_subps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n subps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_divpd, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n divpd xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_divps, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n divps xmm0, xmm1\n movdqu [rdi], xmm0")
SNIP(sse_sqrtss, "movdqu xmm0, [rsi]\n movdqu xmm1, [rsi + 16]\n sqrtss xmm0, xmm1\n movdqu [rdi], xmm0")
// clang-format on
#define C(n, kind, size, undef, ...) \
  Case { #n, n, Kind::kind, size, undef, ##__VA_ARGS__ }

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      C(add8, kPlain, 1, 0),
      C(add8h, kPlain, 1, 0),
      C(add16, kPlain, 2, 0),
      C(add32, kPlain, 4, 0),
      C(add64, kPlain, 8, 0),
      C(add64i, kPlain, 8, 0),
      C(add32i, kPlain, 4, 0),
      C(add8i, kPlain, 1, 0),
      C(adc8, kPlain, 1, 0),
      C(adc16, kPlain, 2, 0),
      C(adc32, kPlain, 4, 0),
      C(adc64, kPlain, 8, 0),
      C(sbb8, kPlain, 1, 0),
      C(sbb16, kPlain, 2, 0),
      C(sbb32, kPlain, 4, 0),
      C(sbb64, kPlain, 8, 0),
      C(sub8, kPlain, 1, 0),
      C(sub16, kPlain, 2, 0),
      C(sub32, kPlain, 4, 0),
      C(sub64, kPlain, 8, 0),
      C(sub64i, kPlain, 8, 0),
      C(cmp8, kPlain, 1, 0),
      C(cmp16, kPlain, 2, 0),
      C(cmp32, kPlain, 4, 0),
      C(cmp64, kPlain, 8, 0),
      C(and8, kPlain, 1, kLogicUndef),
      C(and32, kPlain, 4, kLogicUndef),
      C(and64, kPlain, 8, kLogicUndef),
      C(or16, kPlain, 2, kLogicUndef),
      C(or64, kPlain, 8, kLogicUndef),
      C(xor8, kPlain, 1, kLogicUndef),
      C(xor32, kPlain, 4, kLogicUndef),
      C(xor64, kPlain, 8, kLogicUndef),
      C(test8, kPlain, 1, kLogicUndef),
      C(test64, kPlain, 8, kLogicUndef),
      C(test32i, kPlain, 4, kLogicUndef),
      C(inc8, kPlain, 1, 0),
      C(inc16, kPlain, 2, 0),
      C(inc32, kPlain, 4, 0),
      C(inc64, kPlain, 8, 0),
      C(dec8, kPlain, 1, 0),
      C(dec16, kPlain, 2, 0),
      C(dec32, kPlain, 4, 0),
      C(dec64, kPlain, 8, 0),
      C(neg8, kPlain, 1, 0),
      C(neg16, kPlain, 2, 0),
      C(neg32, kPlain, 4, 0),
      C(neg64, kPlain, 8, 0),
      C(not8, kPlain, 1, 0),
      C(not32, kPlain, 4, 0),
      C(not64, kPlain, 8, 0),

      C(shl8, kShift, 1, 0),
      C(shl16, kShift, 2, 0),
      C(shl32, kShift, 4, 0),
      C(shl64, kShift, 8, 0),
      C(shr8, kShift, 1, 0),
      C(shr16, kShift, 2, 0),
      C(shr32, kShift, 4, 0),
      C(shr64, kShift, 8, 0),
      C(sar8, kShift, 1, 0),
      C(sar16, kShift, 2, 0),
      C(sar32, kShift, 4, 0),
      C(sar64, kShift, 8, 0),
      C(shl64_1, kShift, 8, 0, 1),
      C(shr32_1, kShift, 4, 0, 1),
      C(sar16_1, kShift, 2, 0, 1),
      C(shl8_7, kShift, 1, 0, 7),
      C(sar64_63, kShift, 8, 0, 63),
      C(shl32_5, kShift, 4, 0, 5),
      C(shr64_33, kShift, 8, 0, 33),
      C(sar32_31, kShift, 4, 0, 31),
      C(shl64_63, kShift, 8, 0, 63),
      C(rol8, kRotate, 1, 0),
      C(rol16, kRotate, 2, 0),
      C(rol32, kRotate, 4, 0),
      C(rol64, kRotate, 8, 0),
      C(ror8, kRotate, 1, 0),
      C(ror16, kRotate, 2, 0),
      C(ror32, kRotate, 4, 0),
      C(ror64, kRotate, 8, 0),
      C(rol64_1, kRotate, 8, 0, 1),
      C(ror32_1, kRotate, 4, 0, 1),
      C(rcl8, kRotateCarry, 1, 0),
      C(rcl16, kRotateCarry, 2, 0),
      C(rcl32, kRotateCarry, 4, 0),
      C(rcl64, kRotateCarry, 8, 0),
      C(rcr8, kRotateCarry, 1, 0),
      C(rcr16, kRotateCarry, 2, 0),
      C(rcr32, kRotateCarry, 4, 0),
      C(rcr64, kRotateCarry, 8, 0),
      C(rcl64_1, kRotateCarry, 8, 0, 1),
      C(rcr8_1, kRotateCarry, 1, 0, 1),
      C(shld16, kDoubleShift, 2, 0),
      C(shld32, kDoubleShift, 4, 0),
      C(shld64, kDoubleShift, 8, 0),
      C(shrd16, kDoubleShift, 2, 0),
      C(shrd32, kDoubleShift, 4, 0),
      C(shrd64, kDoubleShift, 8, 0),
      C(shld64i, kDoubleShift, 8, 0, 13),
      C(shrd32i, kDoubleShift, 4, 0, 1),

      C(mul8, kPlain, 1, kMulUndef),
      C(mul16, kPlain, 2, kMulUndef),
      C(mul32, kPlain, 4, kMulUndef),
      C(mul64, kPlain, 8, kMulUndef),
      C(imul8, kPlain, 1, kMulUndef),
      C(imul16, kPlain, 2, kMulUndef),
      C(imul32, kPlain, 4, kMulUndef),
      C(imul64, kPlain, 8, kMulUndef),
      C(imul2_16, kPlain, 2, kMulUndef),
      C(imul2_32, kPlain, 4, kMulUndef),
      C(imul2_64, kPlain, 8, kMulUndef),
      C(imul3_32, kPlain, 4, kMulUndef),
      C(imul3_64, kPlain, 8, kMulUndef),
      C(imul3_16, kPlain, 2, kMulUndef),
      C(div8, kDiv, 1, kAllArith),
      C(div16, kDiv, 2, kAllArith),
      C(div32, kDiv, 4, kAllArith),
      C(div64, kDiv, 8, kAllArith),
      C(idiv8, kIdiv, 1, kAllArith),
      C(idiv16, kIdiv, 2, kAllArith),
      C(idiv32, kIdiv, 4, kAllArith),
      C(idiv64, kIdiv, 8, kAllArith),

      C(bt16, kPlain, 2, kBtUndef),
      C(bt32, kPlain, 4, kBtUndef),
      C(bt64, kPlain, 8, kBtUndef),
      C(bt64i, kPlain, 8, kBtUndef),
      C(bts32, kPlain, 4, kBtUndef),
      C(bts64, kPlain, 8, kBtUndef),
      C(btr16, kPlain, 2, kBtUndef),
      C(btr64, kPlain, 8, kBtUndef),
      C(btc32, kPlain, 4, kBtUndef),
      C(btc64i, kPlain, 8, kBtUndef),
      C(bsf16, kPlain, 2, kBsfUndef, -1, true),
      C(bsf32, kPlain, 4, kBsfUndef, -1, true),
      C(bsf64, kPlain, 8, kBsfUndef, -1, true),
      C(bsr16, kPlain, 2, kBsfUndef, -1, true),
      C(bsr32, kPlain, 4, kBsfUndef, -1, true),
      C(bsr64, kPlain, 8, kBsfUndef, -1, true),
      C(popcnt32, kPlain, 4, 0),
      C(popcnt64, kPlain, 8, 0),
      C(bswap32, kPlain, 4, 0),
      C(bswap64, kPlain, 8, 0),

      C(movzx8, kPlain, 4, 0),
      C(movzx16, kPlain, 8, 0),
      C(movsx8, kPlain, 8, 0),
      C(movsx16, kPlain, 4, 0),
      C(movsxd, kPlain, 8, 0),
      C(mov32, kPlain, 4, 0),
      C(mov8h, kPlain, 1, 0),
      C(mov16, kPlain, 2, 0),
      C(cbw, kPlain, 2, 0),
      C(cwde, kPlain, 4, 0),
      C(cdqe, kPlain, 8, 0),
      C(cwd, kPlain, 2, 0),
      C(cdq, kPlain, 4, 0),
      C(cqo, kPlain, 8, 0),
      C(lea1, kPlain, 8, 0),
      C(lea2, kPlain, 4, 0),
      C(lea3, kPlain, 2, 0),
      C(xchg64, kPlain, 8, 0),
      C(xchg8, kPlain, 1, 0),
      C(xchg32, kPlain, 4, 0),
      C(cmpxchg8, kPlain, 1, 0),
      C(cmpxchg32, kPlain, 4, 0),
      C(cmpxchg64, kPlain, 8, 0),
      C(xadd32, kPlain, 4, 0),
      C(xadd64, kPlain, 8, 0),
      C(xadd_same, kPlain, 8, 0),
      C(cmpxchg_same, kPlain, 8, 0),
      C(xadd8, kPlain, 1, 0),
      C(cmovs, kPlain, 8, 0),
      C(cmov32, kPlain, 4, kLogicUndef),
      C(setccs, kPlain, 8, 0),
      C(setccs2, kPlain, 4, 0),
      C(setcc_adc, kPlain, 8, 0),
      C(lahf, kPlain, 1, 0),
      C(sahf, kPlain, 1, 0),
      C(cmc, kPlain, 1, 0),
      C(stc, kPlain, 1, 0),
      C(clc, kPlain, 1, 0),
      C(inc_then_adc, kPlain, 8, 0),
      C(neg_then_sbb, kPlain, 8, 0),

      C(add_mem, kMemory, 4, 0),
      C(sub_from_mem, kMemory, 8, 0),
      C(inc_mem, kMemory, 2, 0),
      C(neg_mem, kMemory, 1, 0),
      C(shl_mem, kMemory, 4, kFlagOf | kFlagAf | kFlagCf),
      C(bt_mem, kMemory, 4, kBtUndef),
      C(bts_mem, kMemory, 8, kBtUndef),
      C(btr_mem, kMemory, 2, kBtUndef),
      C(btc_mem_i, kMemory, 4, kBtUndef),
      C(xchg_mem, kMemory, 8, 0),
      C(cmpxchg_mem, kMemory, 4, 0),
      C(xadd_mem, kMemory, 8, 0),
      C(cmpxchg8b_mem, kMemory, 8, 0),
      C(movzx_mem, kMemory, 4, 0),
      C(mul_mem, kMemory, 8, kMulUndef),
      C(push_pop_mem, kMemory, 8, 0),

      C(movsb, kString, 1, 0),
      C(movsq, kString, 8, 0),
      C(movsw1, kString, 2, 0),
      C(stosb, kString, 1, 0),
      C(stosd, kString, 4, 0),
      C(lodsq, kString, 8, 0),
      C(cmpsb, kString, 1, 0),
      C(cmpsd, kString, 4, 0),
      C(scasb, kString, 1, 0),
      C(scasw, kString, 2, 0),
      C(sse_pxor, kMemory, 16, 0),
      C(sse_por, kMemory, 16, 0),
      C(sse_pand, kMemory, 16, 0),
      C(sse_pandn, kMemory, 16, 0),
      C(sse_xorps, kMemory, 16, 0),
      C(sse_paddb, kMemory, 16, 0),
      C(sse_paddw, kMemory, 16, 0),
      C(sse_paddd, kMemory, 16, 0),
      C(sse_paddq, kMemory, 16, 0),
      C(sse_psubb, kMemory, 16, 0),
      C(sse_psubq, kMemory, 16, 0),
      C(sse_pcmpeqb, kMemory, 16, 0),
      C(sse_pcmpeqd, kMemory, 16, 0),
      C(sse_pcmpgtb, kMemory, 16, 0),
      C(sse_pcmpgtw, kMemory, 16, 0),
      C(sse_pminub, kMemory, 16, 0),
      C(sse_pmaxub, kMemory, 16, 0),
      C(sse_psubusb, kMemory, 16, 0),
      C(sse_paddusb, kMemory, 16, 0),
      C(sse_pmullw, kMemory, 16, 0),
      C(sse_pmuludq, kMemory, 16, 0),
      C(sse_punpcklbw, kMemory, 16, 0),
      C(sse_punpckhwd, kMemory, 16, 0),
      C(sse_punpckldq, kMemory, 16, 0),
      C(sse_punpckhqdq, kMemory, 16, 0),
      C(sse_pshufd, kMemory, 16, 0),
      C(sse_pshuflw, kMemory, 16, 0),
      C(sse_pshufhw, kMemory, 16, 0),
      C(sse_shufps, kMemory, 16, 0),
      C(sse_pslldq, kMemory, 16, 0),
      C(sse_psrldq, kMemory, 16, 0),
      C(sse_psllw_i, kMemory, 16, 0),
      C(sse_psrld_i, kMemory, 16, 0),
      C(sse_psraw_i, kMemory, 16, 0),
      C(sse_psrad_x, kMemory, 16, 0),
      C(sse_psllq_x, kMemory, 16, 0),
      C(sse_movhlps, kMemory, 16, 0),
      C(sse_movlhps, kMemory, 16, 0),
      C(sse_addsd, kMemory, 16, 0),
      C(sse_mulsd, kMemory, 16, 0),
      C(sse_divsd, kMemory, 16, 0),
      C(sse_minsd, kMemory, 16, 0),
      C(sse_maxsd, kMemory, 16, 0),
      C(sse_minss, kMemory, 16, 0),
      C(sse_maxss, kMemory, 16, 0),
      C(sse_minpd, kMemory, 16, 0),
      C(sse_maxpd, kMemory, 16, 0),
      C(sse_minps, kMemory, 16, 0),
      C(sse_maxps, kMemory, 16, 0),
      C(sse_subpd, kMemory, 16, 0),
      C(sse_subps, kMemory, 16, 0),
      C(sse_divpd, kMemory, 16, 0),
      C(sse_divps, kMemory, 16, 0),
      C(sse_sqrtss, kMemory, 16, 0),
      C(sse_subss, kMemory, 16, 0),
      C(sse_addpd, kMemory, 16, 0),
      C(sse_mulps, kMemory, 16, 0),
      C(sse_sqrtsd, kMemory, 16, 0),
      C(sse_cvtss2sd, kMemory, 16, 0),
      C(sse_cvtsd2ss, kMemory, 16, 0),
      C(sse_movss_rr, kMemory, 16, 0),
      C(sse_movsd_rr, kMemory, 16, 0),
      C(sse_pmovmskb, kMemory, 16, 0),
      C(sse_movd_movq, kMemory, 16, 0),
      C(sse_movlhps_mem, kMemory, 16, 0),
      C(sse_comisd, kMemory, 16, kFlagOf | kFlagSf | kFlagAf),
      C(sse_comiss_same, kMemory, 16, kFlagOf | kFlagSf | kFlagAf),
      C(sse_cvt, kMemory, 16, 0),
      C(sse_aligned, kMemory, 16, 0),
  };
  return all;
}

uint64_t edge_value(std::mt19937_64& rng) {
  static const uint64_t kEdges[] = {0,
                                    1,
                                    2,
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
                                    ~0ull,
                                    ~0ull - 1};
  switch (rng() % 8) {
    case 0: return kEdges[rng() % (sizeof(kEdges) / sizeof(kEdges[0]))];
    case 1: return rng() % 17;
    case 2: return 1ull << (rng() % 64);
    case 3: return (1ull << (rng() % 64)) - 1;
    case 4: return ~0ull - rng() % 17;
    case 5: return rng() & 0xff;
    default: return rng();
  }
}

uint64_t mask_of(unsigned size) { return size_mask(size); }

// Adjusts the inputs to the case's preconditions and returns the flags the
// SDM leaves undefined for these inputs (beyond the case's fixed set), or
// ~0 to skip inputs whose result is undefined.
uint64_t prepare(const Case& c, RegState& in, std::mt19937_64& rng) {
  const unsigned bits = c.size * 8;
  uint64_t undefined = c.undefined;
  if (c.nonzero_rbx && (in.rbx & mask_of(c.size)) == 0) in.rbx |= 1ull << (rng() % bits);
  auto count_of = [&](uint64_t raw) { return static_cast<unsigned>(raw & (c.size == 8 ? 63 : 31)); };
  switch (c.kind) {
    case Kind::kShift: {
      if (c.imm_count < 0) in.rcx = rng() % 80;
      const unsigned count = count_of(c.imm_count >= 0 ? c.imm_count : in.rcx);
      if (count != 0) undefined |= kFlagAf;
      if (count > 1) undefined |= kFlagOf;
      if (count > bits) undefined |= kFlagCf;
      break;
    }
    case Kind::kRotate:
    case Kind::kRotateCarry: {
      if (c.imm_count < 0) in.rcx = rng() % 80;
      const unsigned count = count_of(c.imm_count >= 0 ? c.imm_count : in.rcx);
      if (count > 1) undefined |= kFlagOf;
      break;
    }
    case Kind::kDoubleShift: {
      if (c.imm_count < 0) in.rcx = rng() % 80;
      const unsigned count = count_of(c.imm_count >= 0 ? c.imm_count : in.rcx);
      if (count > bits) return ~0ull;
      if (count != 0) undefined |= kFlagAf;
      if (count > 1) undefined |= kFlagOf;
      break;
    }
    case Kind::kDiv: {
      // Divisor non-zero and quotient in range: the high half of the dividend below the divisor.
      uint64_t divisor = in.rbx & mask_of(c.size);
      if (divisor == 0) divisor = 1 + rng() % std::min<uint64_t>(1000, mask_of(c.size));
      in.rbx = (in.rbx & ~mask_of(c.size)) | divisor;
      if (c.size == 1) {
        uint64_t high = ((in.rax >> 8) & 0xff) % divisor;
        in.rax = (in.rax & ~0xff00ull) | (high << 8);
      } else {
        uint64_t high = (in.rdx & mask_of(c.size)) % divisor;
        in.rdx = (in.rdx & ~mask_of(c.size)) | high;
      }
      break;
    }
    case Kind::kIdiv: {
      int64_t divisor = sign_extend(in.rbx, c.size);
      if (divisor == 0 || divisor == -1) divisor = 3 + static_cast<int64_t>(rng() % 1000);
      in.rbx = (in.rbx & ~mask_of(c.size)) | (static_cast<uint64_t>(divisor) & mask_of(c.size));
      // A dividend that is the sign extension of the low half never overflows (except MIN / -1, excluded).
      const int64_t low = sign_extend(in.rax, c.size);
      if (c.size == 1) {
        in.rax = (in.rax & ~0xffffull) | (static_cast<uint64_t>(low) & 0xffff);
      } else {
        in.rdx = (in.rdx & ~mask_of(c.size)) | (static_cast<uint64_t>(low < 0 ? -1 : 0) & mask_of(c.size));
      }
      break;
    }
    case Kind::kMemory:
      in.rcx = rng() % 200;  // bit offsets and indexes stay inside the buffer
      if (rng() & 1) in.rcx = -static_cast<int64_t>(rng() % 200);
      if (std::string(c.name) == "movzx_mem" || std::string(c.name) == "shl_mem") in.rcx &= 0xff;
      if (std::string(c.name) == "shl_mem" && count_of(in.rcx) <= 1) undefined &= ~(kFlagOf | kFlagCf);
      break;
    case Kind::kString:
      in.rcx = rng() % 40;
      in.rflags = (in.rflags & ~kFlagDf) | ((rng() & 1) ? kFlagDf : 0);
      break;
    case Kind::kPlain: break;
  }
  return undefined;
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class EmuDiffTest : public ::testing::TestWithParam<Case> {};

TEST_P(EmuDiffTest, MatchesHostCpu) {
  const Case& c = GetParam();
  DiffHarness harness(c.code());
  ASSERT_TRUE(harness.ok()) << "mmap of an executable page failed";
  const void* native_code = harness.native_code();
  TestMachine& m = harness.machine();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  alignas(64) static uint8_t src[kBufSize], dst[kBufSize];
  const bool uses_memory = c.kind == Kind::kMemory || c.kind == Kind::kString;
  constexpr int kIterations = 400;
  int compared = 0;
  for (int iter = 0; iter < kIterations; ++iter) {
    RegState in;
    for (int i = 0; i < 10; ++i) *reg(in, i) = edge_value(rng);
    in.rflags = 0x202 | (rng() & kArithFlags);
    const uint64_t undefined = prepare(c, in, rng);
    if (undefined == ~0ull) continue;
    uint64_t src_offset = kBufSize / 2, dst_offset = kBufSize / 2;
    if (uses_memory) {
      for (size_t i = 0; i < kBufSize; ++i) {
        src[i] = static_cast<uint8_t>(rng());
        dst[i] = static_cast<uint8_t>(rng());
      }
      if (c.kind == Kind::kString && (rng() & 3) == 0) std::memcpy(dst, src, kBufSize);  // make REPE run long
      m.write(kGuestSrc, src);
      m.write(kGuestDst, dst);
    }
    // Emulated.
    Cpu& cpu = m.cpu();
    for (int i = 0; i < 10; ++i) cpu.gpr[kEmuIndex[i]] = *reg(in, i);
    if (uses_memory) {
      cpu.gpr[6] = kGuestSrc + src_offset;
      cpu.gpr[7] = kGuestDst + dst_offset;
    }
    write_flags(cpu, in.rflags);
    ASSERT_TRUE(harness.run_emulated(c.name));
    // Native.
    RegState out = in;
    if (uses_memory) {
      out.rsi = reinterpret_cast<uint64_t>(src) + src_offset;
      out.rdi = reinterpret_cast<uint64_t>(dst) + dst_offset;
    }
    hv_emu_native_exec(&out, native_code);

    for (int i = 0; i < 10; ++i) {
      uint64_t want = *reg(out, i);
      uint64_t got = cpu.gpr[kEmuIndex[i]];
      if (uses_memory && i == 4) {
        want -= reinterpret_cast<uint64_t>(src);
        got -= kGuestSrc;
      }
      if (uses_memory && i == 5) {
        want -= reinterpret_cast<uint64_t>(dst);
        got -= kGuestDst;
      }
      ASSERT_EQ(got, want) << c.name << ": " << kRegNames[i] << " differs; inputs rax=" << std::hex << in.rax
                           << " rbx=" << in.rbx << " rcx=" << in.rcx << " rdx=" << in.rdx << " rflags=" << in.rflags;
    }
    const uint64_t compare = (kArithFlags | kFlagDf) & ~undefined;
    ASSERT_EQ(read_flags(cpu) & compare, out.rflags & compare)
        << c.name << ": flags differ (emulated " << std::hex << read_flags(cpu) << ", host " << out.rflags
        << ", compared mask " << compare << "); inputs rax=" << in.rax << " rbx=" << in.rbx << " rcx=" << in.rcx
        << " rdx=" << in.rdx << " rflags=" << in.rflags;
    if (uses_memory) {
      for (size_t i = 0; i < kBufSize; ++i) {
        ASSERT_EQ(m.read<uint8_t>(kGuestSrc + i), src[i]) << c.name << ": source buffer byte " << i;
        ASSERT_EQ(m.read<uint8_t>(kGuestDst + i), dst[i]) << c.name << ": destination buffer byte " << i;
      }
    }
    ++compared;
  }
  EXPECT_GT(compared, kIterations / 2) << c.name << ": too many inputs skipped";
}

INSTANTIATE_TEST_SUITE_P(Instructions, EmuDiffTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace hostvisor::emu
