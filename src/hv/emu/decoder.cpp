#include "hv/emu/decoder.h"

#include "hv/emu/condition_mnemonics.h"
#include "hv/emu/execute/handlers.h"

namespace hostvisor::emu {
namespace {

struct Mapping {
  Handler fn = nullptr;
  bool ends_block = false;
};

// The escape opcodes D8-DF: the control instructions that depend on the
// environment layout or the CPU mode are done in software, every other
// encoding Zydis accepts runs on the host FPU (h_x87).
Mapping x87_handler_for(const ZydisDecodedInstruction& in) {
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_FNINIT: return {h_fninit};
    case ZYDIS_MNEMONIC_FNCLEX: return {h_fnclex};
    case ZYDIS_MNEMONIC_FNSTSW: return {h_fnstsw};
    case ZYDIS_MNEMONIC_FNSTCW: return {h_fnstcw};
    case ZYDIS_MNEMONIC_FLDCW: return {h_fldcw};
    case ZYDIS_MNEMONIC_FNSTENV: return {h_fnstenv};
    case ZYDIS_MNEMONIC_FLDENV: return {h_fldenv};
    case ZYDIS_MNEMONIC_FNSAVE: return {h_fnsave};
    case ZYDIS_MNEMONIC_FRSTOR: return {h_frstor};
    case ZYDIS_MNEMONIC_FENI8087_NOP:
    case ZYDIS_MNEMONIC_FDISI8087_NOP:
    case ZYDIS_MNEMONIC_FSETPM287_NOP: return {h_x87_nop};
    default: return {h_x87};
  }
}

// The integer SIMD instructions with an MMX form, for both register files
// (the handlers size their lanes by the destination register).
Mapping simd_integer_handler_for(const ZydisDecodedInstruction& in) {
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_PXOR: return {h_sse_xor};
    case ZYDIS_MNEMONIC_PAND: return {h_sse_and};
    case ZYDIS_MNEMONIC_PANDN: return {h_sse_andn};
    case ZYDIS_MNEMONIC_POR: return {h_sse_or};
    case ZYDIS_MNEMONIC_PADDB: return {h_sse_paddb};
    case ZYDIS_MNEMONIC_PADDW: return {h_sse_paddw};
    case ZYDIS_MNEMONIC_PADDD: return {h_sse_paddd};
    case ZYDIS_MNEMONIC_PADDQ: return {h_sse_paddq};
    case ZYDIS_MNEMONIC_PSUBB: return {h_sse_psubb};
    case ZYDIS_MNEMONIC_PSUBW: return {h_sse_psubw};
    case ZYDIS_MNEMONIC_PSUBD: return {h_sse_psubd};
    case ZYDIS_MNEMONIC_PSUBQ: return {h_sse_psubq};
    case ZYDIS_MNEMONIC_PADDSB: return {h_sse_paddsb};
    case ZYDIS_MNEMONIC_PADDSW: return {h_sse_paddsw};
    case ZYDIS_MNEMONIC_PADDUSB: return {h_sse_paddusb};
    case ZYDIS_MNEMONIC_PADDUSW: return {h_sse_paddusw};
    case ZYDIS_MNEMONIC_PSUBSB: return {h_sse_psubsb};
    case ZYDIS_MNEMONIC_PSUBSW: return {h_sse_psubsw};
    case ZYDIS_MNEMONIC_PSUBUSB: return {h_sse_psubusb};
    case ZYDIS_MNEMONIC_PSUBUSW: return {h_sse_psubusw};
    case ZYDIS_MNEMONIC_PCMPEQB: return {h_sse_pcmpeqb};
    case ZYDIS_MNEMONIC_PCMPEQW: return {h_sse_pcmpeqw};
    case ZYDIS_MNEMONIC_PCMPEQD: return {h_sse_pcmpeqd};
    case ZYDIS_MNEMONIC_PCMPGTB: return {h_sse_pcmpgtb};
    case ZYDIS_MNEMONIC_PCMPGTW: return {h_sse_pcmpgtw};
    case ZYDIS_MNEMONIC_PCMPGTD: return {h_sse_pcmpgtd};
    case ZYDIS_MNEMONIC_PMINUB: return {h_sse_pminub};
    case ZYDIS_MNEMONIC_PMAXUB: return {h_sse_pmaxub};
    case ZYDIS_MNEMONIC_PMINSW: return {h_sse_pminsw};
    case ZYDIS_MNEMONIC_PMAXSW: return {h_sse_pmaxsw};
    case ZYDIS_MNEMONIC_PAVGB: return {h_sse_pavgb};
    case ZYDIS_MNEMONIC_PAVGW: return {h_sse_pavgw};
    case ZYDIS_MNEMONIC_PMULLW: return {h_sse_pmullw};
    case ZYDIS_MNEMONIC_PMULHW: return {h_sse_pmulhw};
    case ZYDIS_MNEMONIC_PMULHUW: return {h_sse_pmulhuw};
    case ZYDIS_MNEMONIC_PMULUDQ: return {h_sse_pmuludq};
    case ZYDIS_MNEMONIC_PMADDWD: return {h_sse_pmaddwd};
    case ZYDIS_MNEMONIC_PSADBW: return {h_sse_psadbw};
    case ZYDIS_MNEMONIC_PACKSSWB: return {h_sse_packsswb};
    case ZYDIS_MNEMONIC_PACKSSDW: return {h_sse_packssdw};
    case ZYDIS_MNEMONIC_PACKUSWB: return {h_sse_packuswb};
    case ZYDIS_MNEMONIC_PUNPCKLBW: return {h_sse_punpcklbw};
    case ZYDIS_MNEMONIC_PUNPCKLWD: return {h_sse_punpcklwd};
    case ZYDIS_MNEMONIC_PUNPCKLDQ: return {h_sse_punpckldq};
    case ZYDIS_MNEMONIC_PUNPCKHBW: return {h_sse_punpckhbw};
    case ZYDIS_MNEMONIC_PUNPCKHWD: return {h_sse_punpckhwd};
    case ZYDIS_MNEMONIC_PUNPCKHDQ: return {h_sse_punpckhdq};
    case ZYDIS_MNEMONIC_PMOVMSKB: return {h_sse_pmovmskb};
    // PEXTRW: only the SSE2/MMX form into a GPR (0F C5); SSE4.1's store form is not advertised.
    case ZYDIS_MNEMONIC_PEXTRW: return {in.opcode == 0xc5 ? h_sse_pextrw : nullptr, in.opcode != 0xc5};
    case ZYDIS_MNEMONIC_PINSRW: return {h_sse_pinsrw};
    case ZYDIS_MNEMONIC_PSLLW: return {h_sse_psllw};
    case ZYDIS_MNEMONIC_PSLLD: return {h_sse_pslld};
    case ZYDIS_MNEMONIC_PSLLQ: return {h_sse_psllq};
    case ZYDIS_MNEMONIC_PSRLW: return {h_sse_psrlw};
    case ZYDIS_MNEMONIC_PSRLD: return {h_sse_psrld};
    case ZYDIS_MNEMONIC_PSRLQ: return {h_sse_psrlq};
    case ZYDIS_MNEMONIC_PSRAW: return {h_sse_psraw};
    case ZYDIS_MNEMONIC_PSRAD: return {h_sse_psrad};
    default: return {nullptr, true};
  }
}

// Instructions with an MMX register operand.
Mapping mmx_handler_for(const ZydisDecodedInstruction& in) {
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_MOVD:
    case ZYDIS_MNEMONIC_MOVQ:
    case ZYDIS_MNEMONIC_MOVNTQ: return {h_sse_movd};
    case ZYDIS_MNEMONIC_MOVQ2DQ:
    case ZYDIS_MNEMONIC_MOVDQ2Q: return {h_movq2dq};
    case ZYDIS_MNEMONIC_PSHUFW: return {h_mmx_pshufw};
    case ZYDIS_MNEMONIC_MASKMOVQ: return {h_sse_maskmov};
    case ZYDIS_MNEMONIC_CVTPI2PS: return {h_sse_cvtpi2ps};
    case ZYDIS_MNEMONIC_CVTPS2PI: return {h_sse_cvtps2pi};
    case ZYDIS_MNEMONIC_CVTTPS2PI: return {h_sse_cvttps2pi};
    case ZYDIS_MNEMONIC_CVTPI2PD: return {h_sse_cvtpi2pd};
    case ZYDIS_MNEMONIC_CVTPD2PI: return {h_sse_cvtpd2pi};
    case ZYDIS_MNEMONIC_CVTTPD2PI: return {h_sse_cvttpd2pi};
    default: return simd_integer_handler_for(in);
  }
}

uint8_t x87_details(const ZydisDecodedInstruction& in) {
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_FST:
    case ZYDIS_MNEMONIC_FSTP:
    case ZYDIS_MNEMONIC_FIST:
    case ZYDIS_MNEMONIC_FISTP:
    case ZYDIS_MNEMONIC_FISTTP:
    case ZYDIS_MNEMONIC_FBSTP: return kX87Store;
    case ZYDIS_MNEMONIC_FCOMI:
    case ZYDIS_MNEMONIC_FCOMIP:
    case ZYDIS_MNEMONIC_FUCOMI:
    case ZYDIS_MNEMONIC_FUCOMIP: return kX87SetsFlags;
    default: return 0;
  }
}

// The handler for a decoded instruction; nullptr means #UD (not implemented
// instructions raise #UD, which a guest that checked CPUID never executes).
Mapping handler_for(const ZydisDecodedInstruction& in, const ZydisDecodedOperand* ops) {
  const bool legacy_map = in.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT;
  auto has_reg_class = [&](ZydisRegisterClass cls) {
    for (unsigned i = 0; i < in.operand_count_visible; ++i) {
      if (ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER && ZydisRegisterGetClass(ops[i].reg.value) == cls) return true;
    }
    return false;
  };
  if (legacy_map && in.opcode >= 0xd8 && in.opcode <= 0xdf) return x87_handler_for(in);
  if (has_reg_class(ZYDIS_REGCLASS_MMX)) return mmx_handler_for(in);
  if (is_jcc(in.mnemonic)) return {h_jcc, true};
  if (is_cmovcc(in.mnemonic)) return {h_cmovcc};
  if (is_setcc(in.mnemonic)) return {h_setcc};
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_ADD: return {h_add};
    case ZYDIS_MNEMONIC_OR: return {h_or};
    case ZYDIS_MNEMONIC_ADC: return {h_adc};
    case ZYDIS_MNEMONIC_SBB: return {h_sbb};
    case ZYDIS_MNEMONIC_AND: return {h_and};
    case ZYDIS_MNEMONIC_SUB: return {h_sub};
    case ZYDIS_MNEMONIC_XOR: return {h_xor};
    case ZYDIS_MNEMONIC_CMP: return {h_cmp};
    case ZYDIS_MNEMONIC_TEST: return {h_test};
    case ZYDIS_MNEMONIC_INC: return {h_inc};
    case ZYDIS_MNEMONIC_DEC: return {h_dec};
    case ZYDIS_MNEMONIC_NEG: return {h_neg};
    case ZYDIS_MNEMONIC_NOT: return {h_not};

    case ZYDIS_MNEMONIC_ROL: return {h_rol};
    case ZYDIS_MNEMONIC_ROR: return {h_ror};
    case ZYDIS_MNEMONIC_RCL: return {h_rcl};
    case ZYDIS_MNEMONIC_RCR: return {h_rcr};
    case ZYDIS_MNEMONIC_SHL: return {h_shl};
    case ZYDIS_MNEMONIC_SHR: return {h_shr};
    case ZYDIS_MNEMONIC_SAR: return {h_sar};
    case ZYDIS_MNEMONIC_SHLD: return {h_shld};
    case ZYDIS_MNEMONIC_SHRD: return {h_shrd};

    case ZYDIS_MNEMONIC_MUL: return {h_mul};
    case ZYDIS_MNEMONIC_IMUL: return {h_imul};
    case ZYDIS_MNEMONIC_DIV: return {h_div};
    case ZYDIS_MNEMONIC_IDIV: return {h_idiv};

    case ZYDIS_MNEMONIC_BT: return {h_bt};
    case ZYDIS_MNEMONIC_BTS: return {h_bts};
    case ZYDIS_MNEMONIC_BTR: return {h_btr};
    case ZYDIS_MNEMONIC_BTC: return {h_btc};
    // Without BMI1/ABM advertised, F3-prefixed BSF/BSR execute as BSF/BSR (as on CPUs without them).
    case ZYDIS_MNEMONIC_BSF:
    case ZYDIS_MNEMONIC_TZCNT: return {h_bsf};
    case ZYDIS_MNEMONIC_BSR:
    case ZYDIS_MNEMONIC_LZCNT: return {h_bsr};
    case ZYDIS_MNEMONIC_POPCNT: return {h_popcnt};
    case ZYDIS_MNEMONIC_BSWAP: return {h_bswap};

    case ZYDIS_MNEMONIC_MOV:
      if (has_reg_class(ZYDIS_REGCLASS_CONTROL)) return {h_mov_cr, true};
      if (has_reg_class(ZYDIS_REGCLASS_DEBUG)) return {h_mov_dr, true};
      if (has_reg_class(ZYDIS_REGCLASS_SEGMENT)) {
        if (ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
            ZydisRegisterGetClass(ops[0].reg.value) == ZYDIS_REGCLASS_SEGMENT) {
          return {h_mov_to_sreg, true};
        }
        return {h_mov_from_sreg};
      }
      return {h_mov};
    case ZYDIS_MNEMONIC_MOVZX: return {h_movzx};
    case ZYDIS_MNEMONIC_MOVSX:
    case ZYDIS_MNEMONIC_MOVSXD: return {h_movsx};
    case ZYDIS_MNEMONIC_LEA: return {h_lea};
    case ZYDIS_MNEMONIC_XCHG: return {h_xchg};
    case ZYDIS_MNEMONIC_CMPXCHG: return {h_cmpxchg};
    case ZYDIS_MNEMONIC_CMPXCHG8B:
    case ZYDIS_MNEMONIC_CMPXCHG16B: return {h_cmpxchg8b};
    case ZYDIS_MNEMONIC_XADD: return {h_xadd};
    case ZYDIS_MNEMONIC_CBW:
    case ZYDIS_MNEMONIC_CWDE:
    case ZYDIS_MNEMONIC_CDQE: return {h_cbw};
    case ZYDIS_MNEMONIC_CWD:
    case ZYDIS_MNEMONIC_CDQ:
    case ZYDIS_MNEMONIC_CQO: return {h_cwd};
    case ZYDIS_MNEMONIC_LAHF: return {h_lahf};
    case ZYDIS_MNEMONIC_SAHF: return {h_sahf};
    case ZYDIS_MNEMONIC_CLC: return {h_clc};
    case ZYDIS_MNEMONIC_STC: return {h_stc};
    case ZYDIS_MNEMONIC_CMC: return {h_cmc};
    case ZYDIS_MNEMONIC_CLD: return {h_cld};
    case ZYDIS_MNEMONIC_STD: return {h_std};
    case ZYDIS_MNEMONIC_NOP:
    case ZYDIS_MNEMONIC_PAUSE:
    case ZYDIS_MNEMONIC_ENDBR32:
    case ZYDIS_MNEMONIC_ENDBR64:
    case ZYDIS_MNEMONIC_PREFETCH:
    case ZYDIS_MNEMONIC_PREFETCHW:
    case ZYDIS_MNEMONIC_PREFETCHNTA:
    case ZYDIS_MNEMONIC_PREFETCHT0:
    case ZYDIS_MNEMONIC_PREFETCHT1:
    case ZYDIS_MNEMONIC_PREFETCHT2:
    case ZYDIS_MNEMONIC_LFENCE:
    case ZYDIS_MNEMONIC_MFENCE:
    case ZYDIS_MNEMONIC_SFENCE:
    case ZYDIS_MNEMONIC_CLFLUSH: return {h_nop};
    case ZYDIS_MNEMONIC_XLAT: return {h_xlat};

    case ZYDIS_MNEMONIC_PUSH: return {h_push};
    case ZYDIS_MNEMONIC_POP:
      return {h_pop, ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
                         ZydisRegisterGetClass(ops[0].reg.value) == ZYDIS_REGCLASS_SEGMENT};
    case ZYDIS_MNEMONIC_PUSHF:
    case ZYDIS_MNEMONIC_PUSHFD:
    case ZYDIS_MNEMONIC_PUSHFQ: return {h_pushf};
    case ZYDIS_MNEMONIC_POPF:
    case ZYDIS_MNEMONIC_POPFD:
    case ZYDIS_MNEMONIC_POPFQ: return {h_popf, true};
    case ZYDIS_MNEMONIC_PUSHA:
    case ZYDIS_MNEMONIC_PUSHAD: return {h_pusha};
    case ZYDIS_MNEMONIC_POPA:
    case ZYDIS_MNEMONIC_POPAD: return {h_popa};
    case ZYDIS_MNEMONIC_CALL:
      if (in.opcode == 0x9a || (in.opcode == 0xff && in.raw.modrm.reg == 3)) return {h_call_far, true};
      return {h_call, true};
    case ZYDIS_MNEMONIC_JMP:
      if (in.opcode == 0xea || (in.opcode == 0xff && in.raw.modrm.reg == 5)) return {h_jmp_far, true};
      return {h_jmp, true};
    case ZYDIS_MNEMONIC_RET:
      if (in.opcode == 0xca || in.opcode == 0xcb) return {h_ret_far, true};
      return {h_ret, true};
    case ZYDIS_MNEMONIC_JCXZ:
    case ZYDIS_MNEMONIC_JECXZ:
    case ZYDIS_MNEMONIC_JRCXZ: return {h_jcxz, true};
    case ZYDIS_MNEMONIC_LOOP:
    case ZYDIS_MNEMONIC_LOOPE:
    case ZYDIS_MNEMONIC_LOOPNE: return {h_loop, true};
    case ZYDIS_MNEMONIC_ENTER: return {h_enter};
    case ZYDIS_MNEMONIC_LEAVE: return {h_leave};
    case ZYDIS_MNEMONIC_INT: return {h_int, true};
    case ZYDIS_MNEMONIC_INT3: return {h_int3, true};
    case ZYDIS_MNEMONIC_INTO: return {h_into, true};
    case ZYDIS_MNEMONIC_INT1: return {h_int1, true};
    case ZYDIS_MNEMONIC_IRET:
    case ZYDIS_MNEMONIC_IRETD:
    case ZYDIS_MNEMONIC_IRETQ: return {h_iret, true};

    case ZYDIS_MNEMONIC_MOVSB:
    case ZYDIS_MNEMONIC_MOVSW:
    case ZYDIS_MNEMONIC_MOVSQ: return {h_movs, true};
    case ZYDIS_MNEMONIC_CMPSB:
    case ZYDIS_MNEMONIC_CMPSW:
    case ZYDIS_MNEMONIC_CMPSQ: return {h_cmps, true};
    case ZYDIS_MNEMONIC_CMPSD: return {legacy_map ? h_cmps : h_sse_cmpsd, legacy_map};
    case ZYDIS_MNEMONIC_STOSB:
    case ZYDIS_MNEMONIC_STOSW:
    case ZYDIS_MNEMONIC_STOSD:
    case ZYDIS_MNEMONIC_STOSQ: return {h_stos, true};
    case ZYDIS_MNEMONIC_LODSB:
    case ZYDIS_MNEMONIC_LODSW:
    case ZYDIS_MNEMONIC_LODSD:
    case ZYDIS_MNEMONIC_LODSQ: return {h_lods, true};
    case ZYDIS_MNEMONIC_SCASB:
    case ZYDIS_MNEMONIC_SCASW:
    case ZYDIS_MNEMONIC_SCASD:
    case ZYDIS_MNEMONIC_SCASQ: return {h_scas, true};
    case ZYDIS_MNEMONIC_INSB:
    case ZYDIS_MNEMONIC_INSW:
    case ZYDIS_MNEMONIC_INSD: return {h_ins, true};
    case ZYDIS_MNEMONIC_OUTSB:
    case ZYDIS_MNEMONIC_OUTSW:
    case ZYDIS_MNEMONIC_OUTSD: return {h_outs, true};

    case ZYDIS_MNEMONIC_LGDT: return {h_lgdt, true};
    case ZYDIS_MNEMONIC_LIDT: return {h_lidt, true};
    case ZYDIS_MNEMONIC_SGDT: return {h_sgdt};
    case ZYDIS_MNEMONIC_SIDT: return {h_sidt};
    case ZYDIS_MNEMONIC_LLDT: return {h_lldt, true};
    case ZYDIS_MNEMONIC_SLDT: return {h_sldt};
    case ZYDIS_MNEMONIC_LTR: return {h_ltr, true};
    case ZYDIS_MNEMONIC_STR: return {h_str};
    case ZYDIS_MNEMONIC_RDMSR: return {h_rdmsr};
    case ZYDIS_MNEMONIC_WRMSR: return {h_wrmsr, true};
    case ZYDIS_MNEMONIC_CPUID: return {h_cpuid};
    case ZYDIS_MNEMONIC_RDTSC: return {h_rdtsc};
    case ZYDIS_MNEMONIC_RDTSCP: return {h_rdtscp};
    case ZYDIS_MNEMONIC_IN: return {h_in, true};
    case ZYDIS_MNEMONIC_OUT: return {h_out, true};
    case ZYDIS_MNEMONIC_CLI: return {h_cli, true};
    case ZYDIS_MNEMONIC_STI: return {h_sti, true};
    case ZYDIS_MNEMONIC_HLT: return {h_hlt, true};
    case ZYDIS_MNEMONIC_INVLPG: return {h_invlpg, true};
    case ZYDIS_MNEMONIC_CLTS: return {h_clts, true};
    case ZYDIS_MNEMONIC_LMSW: return {h_lmsw, true};
    case ZYDIS_MNEMONIC_SMSW: return {h_smsw};
    case ZYDIS_MNEMONIC_SWAPGS: return {h_swapgs, true};
    case ZYDIS_MNEMONIC_SYSCALL: return {h_syscall, true};
    case ZYDIS_MNEMONIC_SYSRET: return {h_sysret, true};
    case ZYDIS_MNEMONIC_WBINVD:
    case ZYDIS_MNEMONIC_INVD: return {h_privileged_nop};
    case ZYDIS_MNEMONIC_MOVNTI: return {h_mov};

    // SSE/SSE2 (sse.cpp) and the x87/FXSAVE state (x87.cpp).
    case ZYDIS_MNEMONIC_MOVAPS:
    case ZYDIS_MNEMONIC_MOVAPD:
    case ZYDIS_MNEMONIC_MOVDQA:
    case ZYDIS_MNEMONIC_MOVNTPS:
    case ZYDIS_MNEMONIC_MOVNTPD:
    case ZYDIS_MNEMONIC_MOVNTDQ: return {h_sse_mov_aligned};
    case ZYDIS_MNEMONIC_MOVUPS:
    case ZYDIS_MNEMONIC_MOVUPD:
    case ZYDIS_MNEMONIC_MOVDQU: return {h_sse_mov_unaligned};
    case ZYDIS_MNEMONIC_MOVD:
    case ZYDIS_MNEMONIC_MOVQ: return {h_sse_movd};
    case ZYDIS_MNEMONIC_MOVSS: return {h_sse_movss};
    case ZYDIS_MNEMONIC_MOVSD: return {legacy_map ? h_movs : h_sse_movsd, legacy_map};
    case ZYDIS_MNEMONIC_MOVLPS:
    case ZYDIS_MNEMONIC_MOVLPD: return {h_sse_movlp};
    case ZYDIS_MNEMONIC_MOVHPS:
    case ZYDIS_MNEMONIC_MOVHPD: return {h_sse_movhp};
    case ZYDIS_MNEMONIC_MOVHLPS: return {h_sse_movhlps};
    case ZYDIS_MNEMONIC_MOVLHPS: return {h_sse_movlhps};
    case ZYDIS_MNEMONIC_XORPS:
    case ZYDIS_MNEMONIC_XORPD: return {h_sse_xor};
    case ZYDIS_MNEMONIC_ANDPS:
    case ZYDIS_MNEMONIC_ANDPD: return {h_sse_and};
    case ZYDIS_MNEMONIC_ANDNPS:
    case ZYDIS_MNEMONIC_ANDNPD: return {h_sse_andn};
    case ZYDIS_MNEMONIC_ORPS:
    case ZYDIS_MNEMONIC_ORPD: return {h_sse_or};
    case ZYDIS_MNEMONIC_MOVMSKPS: return {h_sse_movmskps};
    case ZYDIS_MNEMONIC_MOVMSKPD: return {h_sse_movmskpd};
    case ZYDIS_MNEMONIC_UNPCKLPS: return {h_sse_punpckldq};
    case ZYDIS_MNEMONIC_PUNPCKLQDQ:
    case ZYDIS_MNEMONIC_UNPCKLPD: return {h_sse_punpcklqdq};
    case ZYDIS_MNEMONIC_UNPCKHPS: return {h_sse_punpckhdq};
    case ZYDIS_MNEMONIC_PUNPCKHQDQ:
    case ZYDIS_MNEMONIC_UNPCKHPD: return {h_sse_punpckhqdq};
    case ZYDIS_MNEMONIC_PSHUFD: return {h_sse_pshufd};
    case ZYDIS_MNEMONIC_PSHUFLW: return {h_sse_pshuflw};
    case ZYDIS_MNEMONIC_PSHUFHW: return {h_sse_pshufhw};
    case ZYDIS_MNEMONIC_SHUFPS: return {h_sse_shufps};
    case ZYDIS_MNEMONIC_PSLLDQ: return {h_sse_pslldq};
    case ZYDIS_MNEMONIC_PSRLDQ: return {h_sse_psrldq};
    case ZYDIS_MNEMONIC_ADDSD: return {h_sse_addsd};
    case ZYDIS_MNEMONIC_SUBSD: return {h_sse_subsd};
    case ZYDIS_MNEMONIC_MULSD: return {h_sse_mulsd};
    case ZYDIS_MNEMONIC_DIVSD: return {h_sse_divsd};
    case ZYDIS_MNEMONIC_SQRTSD: return {h_sse_sqrtsd};
    case ZYDIS_MNEMONIC_ADDSS: return {h_sse_addss};
    case ZYDIS_MNEMONIC_SUBSS: return {h_sse_subss};
    case ZYDIS_MNEMONIC_MULSS: return {h_sse_mulss};
    case ZYDIS_MNEMONIC_DIVSS: return {h_sse_divss};
    case ZYDIS_MNEMONIC_ADDPD: return {h_sse_addpd};
    case ZYDIS_MNEMONIC_MULPD: return {h_sse_mulpd};
    case ZYDIS_MNEMONIC_ADDPS: return {h_sse_addps};
    case ZYDIS_MNEMONIC_MULPS: return {h_sse_mulps};
    case ZYDIS_MNEMONIC_MINSD: return {h_sse_minsd};
    case ZYDIS_MNEMONIC_MAXSD: return {h_sse_maxsd};
    case ZYDIS_MNEMONIC_MINSS: return {h_sse_minss};
    case ZYDIS_MNEMONIC_MAXSS: return {h_sse_maxss};
    case ZYDIS_MNEMONIC_MINPD: return {h_sse_minpd};
    case ZYDIS_MNEMONIC_MAXPD: return {h_sse_maxpd};
    case ZYDIS_MNEMONIC_MINPS: return {h_sse_minps};
    case ZYDIS_MNEMONIC_MAXPS: return {h_sse_maxps};
    case ZYDIS_MNEMONIC_SUBPD: return {h_sse_subpd};
    case ZYDIS_MNEMONIC_SUBPS: return {h_sse_subps};
    case ZYDIS_MNEMONIC_DIVPD: return {h_sse_divpd};
    case ZYDIS_MNEMONIC_DIVPS: return {h_sse_divps};
    case ZYDIS_MNEMONIC_SQRTSS: return {h_sse_sqrtss};
    case ZYDIS_MNEMONIC_UCOMISD: return {h_sse_ucomisd};
    case ZYDIS_MNEMONIC_COMISD: return {h_sse_comisd};
    case ZYDIS_MNEMONIC_UCOMISS: return {h_sse_ucomiss};
    case ZYDIS_MNEMONIC_COMISS: return {h_sse_comiss};
    case ZYDIS_MNEMONIC_SQRTPS: return {h_sse_sqrtps};
    case ZYDIS_MNEMONIC_SQRTPD: return {h_sse_sqrtpd};
    case ZYDIS_MNEMONIC_CVTPS2PD: return {h_sse_cvtps2pd};
    case ZYDIS_MNEMONIC_CVTPD2PS: return {h_sse_cvtpd2ps};
    case ZYDIS_MNEMONIC_CVTDQ2PS: return {h_sse_cvtdq2ps};
    case ZYDIS_MNEMONIC_CVTPS2DQ: return {h_sse_cvtps2dq};
    case ZYDIS_MNEMONIC_CVTTPS2DQ: return {h_sse_cvttps2dq};
    case ZYDIS_MNEMONIC_CVTDQ2PD: return {h_sse_cvtdq2pd};
    case ZYDIS_MNEMONIC_CVTPD2DQ: return {h_sse_cvtpd2dq};
    case ZYDIS_MNEMONIC_CVTTPD2DQ: return {h_sse_cvttpd2dq};
    case ZYDIS_MNEMONIC_RCPPS: return {h_sse_rcpps};
    case ZYDIS_MNEMONIC_RCPSS: return {h_sse_rcpss};
    case ZYDIS_MNEMONIC_RSQRTPS: return {h_sse_rsqrtps};
    case ZYDIS_MNEMONIC_RSQRTSS: return {h_sse_rsqrtss};
    case ZYDIS_MNEMONIC_CMPPS: return {h_sse_cmpps};
    case ZYDIS_MNEMONIC_CMPPD: return {h_sse_cmppd};
    case ZYDIS_MNEMONIC_CMPSS: return {h_sse_cmpss};
    case ZYDIS_MNEMONIC_CVTSD2SI: return {h_sse_cvtsd2si};
    case ZYDIS_MNEMONIC_CVTSS2SI: return {h_sse_cvtss2si};
    case ZYDIS_MNEMONIC_SHUFPD: return {h_sse_shufpd};
    case ZYDIS_MNEMONIC_MASKMOVDQU: return {h_sse_maskmov};
    // From a 64-bit memory operand (the MMX register forms are in mmx_handler_for).
    case ZYDIS_MNEMONIC_CVTPI2PS: return {h_sse_cvtpi2ps};
    case ZYDIS_MNEMONIC_CVTPI2PD: return {h_sse_cvtpi2pd};
    case ZYDIS_MNEMONIC_CVTSI2SD: return {h_sse_cvtsi2sd};
    case ZYDIS_MNEMONIC_CVTSI2SS: return {h_sse_cvtsi2ss};
    case ZYDIS_MNEMONIC_CVTTSD2SI: return {h_sse_cvttsd2si};
    case ZYDIS_MNEMONIC_CVTTSS2SI: return {h_sse_cvttss2si};
    case ZYDIS_MNEMONIC_CVTSS2SD: return {h_sse_cvtss2sd};
    case ZYDIS_MNEMONIC_CVTSD2SS: return {h_sse_cvtsd2ss};
    case ZYDIS_MNEMONIC_LDMXCSR: return {h_ldmxcsr};
    case ZYDIS_MNEMONIC_STMXCSR: return {h_stmxcsr};
    case ZYDIS_MNEMONIC_FXSAVE:
    case ZYDIS_MNEMONIC_FXSAVE64: return {h_fxsave};
    case ZYDIS_MNEMONIC_FXRSTOR:
    case ZYDIS_MNEMONIC_FXRSTOR64: return {h_fxrstor};
    // The x87 control instructions are escape opcodes (x87_handler_for); FWAIT is not.
    case ZYDIS_MNEMONIC_FWAIT: return {h_fwait};
    case ZYDIS_MNEMONIC_EMMS: return {h_emms};
    case ZYDIS_MNEMONIC_UD0:
    case ZYDIS_MNEMONIC_UD1:
    case ZYDIS_MNEMONIC_UD2: return {h_ud, true};
    // The integer SIMD instructions that also have an MMX form.
    default: return simd_integer_handler_for(in);
  }
}

uint8_t segment_number(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_ES: return kEs;
    case ZYDIS_REGISTER_CS: return kCs;
    case ZYDIS_REGISTER_SS: return kSs;
    case ZYDIS_REGISTER_FS: return kFs;
    case ZYDIS_REGISTER_GS: return kGs;
    default: return kDs;
  }
}

// GPR number 0-15 (and whether it is AH/CH/DH/BH) of a Zydis register.
uint8_t gpr_number(ZydisRegister r, bool* high8) {
  *high8 = false;
  if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_R15B) {
    int i = r - ZYDIS_REGISTER_AL;
    if (i < 4) return static_cast<uint8_t>(i);
    if (i < 8) {
      *high8 = true;
      return static_cast<uint8_t>(i - 4);
    }
    return static_cast<uint8_t>(i - 4);  // SPL.. = 4.., R8B.. = 8..
  }
  if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W) return static_cast<uint8_t>(r - ZYDIS_REGISTER_AX);
  if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D) return static_cast<uint8_t>(r - ZYDIS_REGISTER_EAX);
  if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15) return static_cast<uint8_t>(r - ZYDIS_REGISTER_RAX);
  if (r == ZYDIS_REGISTER_RIP || r == ZYDIS_REGISTER_EIP || r == ZYDIS_REGISTER_IP) return kRipReg;
  return kNoReg;
}

}  // namespace

Decoder::Decoder() {
  ZydisDecoderInit(&d16_, ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16);
  ZydisDecoderInit(&d32_, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
  ZydisDecoderInit(&d64_, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  ZydisDecoderInit(&real_, ZYDIS_MACHINE_MODE_REAL_16, ZYDIS_STACK_WIDTH_16);
}

Decoder::Status Decoder::decode(const uint8_t* bytes, size_t length, unsigned code_size, bool real, Insn& insn) const {
  const ZydisDecoder* d = code_size == 8 ? &d64_ : code_size == 4 ? &d32_ : real ? &real_ : &d16_;
  ZydisDecodedInstruction in;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  insn = Insn{};
  ZyanStatus st = ZydisDecoderDecodeFull(d, bytes, length, &in, ops);
  if (!ZYAN_SUCCESS(st)) {
    // Executable either way: a caller that ignores the status runs #UD, never a null handler.
    insn.fn = h_ud;
    insn.len = 1;
    insn.ends_block = true;
    return st == ZYDIS_STATUS_NO_MORE_DATA ? Status::kNeedMoreBytes : Status::kInvalid;
  }
  insn.len = in.length;
  insn.mnemonic = static_cast<uint16_t>(in.mnemonic);
  insn.opsize = static_cast<uint8_t>(in.operand_width / 8 ? in.operand_width / 8 : code_size);
  insn.addrsize = static_cast<uint8_t>(in.address_width / 8 ? in.address_width / 8 : code_size);
  if (in.attributes & ZYDIS_ATTRIB_HAS_REP) insn.prefixes |= kPrefixRep;
  if (in.attributes & ZYDIS_ATTRIB_HAS_REPE) insn.prefixes |= kPrefixRep;
  if (in.attributes & ZYDIS_ATTRIB_HAS_REPNE) insn.prefixes |= kPrefixRepne;
  if (in.attributes & ZYDIS_ATTRIB_HAS_LOCK) insn.prefixes |= kPrefixLock;
  // The segment for string sources (and any memory operand): override or DS.
  insn.mem.seg = kDs;
  static constexpr struct {
    uint64_t attr;
    uint8_t seg;
  } kOverrides[] = {{ZYDIS_ATTRIB_HAS_SEGMENT_ES, kEs}, {ZYDIS_ATTRIB_HAS_SEGMENT_CS, kCs},
                    {ZYDIS_ATTRIB_HAS_SEGMENT_SS, kSs}, {ZYDIS_ATTRIB_HAS_SEGMENT_DS, kDs},
                    {ZYDIS_ATTRIB_HAS_SEGMENT_FS, kFs}, {ZYDIS_ATTRIB_HAS_SEGMENT_GS, kGs}};
  for (const auto& o : kOverrides) {
    if (in.attributes & o.attr) {
      insn.mem.seg = o.seg;
      insn.prefixes |= kPrefixSegOverride;
    }
  }
  // Condition code from the opcode's low nibble (Jcc, SETcc, CMOVcc).
  insn.cc = in.opcode & 0xf;

  Mapping m = handler_for(in, ops);
  insn.fn = m.fn ? m.fn : h_ud;
  insn.ends_block = m.ends_block || !m.fn;

  bool seen_imm = false;
  unsigned n = 0;
  for (unsigned i = 0; i < in.operand_count_visible && n < 3; ++i) {
    const ZydisDecodedOperand& zo = ops[i];
    Operand& o = insn.op[n];
    o.size = static_cast<uint8_t>(zo.size / 8);
    switch (zo.type) {
      case ZYDIS_OPERAND_TYPE_REGISTER: {
        ZydisRegisterClass cls = ZydisRegisterGetClass(zo.reg.value);
        if (cls == ZYDIS_REGCLASS_SEGMENT) {
          o.kind = OpKind::kSreg;
          o.reg = segment_number(zo.reg.value);
        } else if (cls == ZYDIS_REGCLASS_CONTROL) {
          o.kind = OpKind::kCr;
          o.reg = static_cast<uint8_t>(zo.reg.value - ZYDIS_REGISTER_CR0);
        } else if (cls == ZYDIS_REGCLASS_DEBUG) {
          o.kind = OpKind::kDr;
          o.reg = static_cast<uint8_t>(zo.reg.value - ZYDIS_REGISTER_DR0);
        } else if (cls == ZYDIS_REGCLASS_XMM) {
          o.kind = OpKind::kXmm;
          o.reg = static_cast<uint8_t>(zo.reg.value - ZYDIS_REGISTER_XMM0);
        } else if (cls >= ZYDIS_REGCLASS_GPR8 && cls <= ZYDIS_REGCLASS_GPR64) {
          o.kind = OpKind::kReg;
          o.reg = gpr_number(zo.reg.value, &o.high8);
        } else if (cls == ZYDIS_REGCLASS_X87) {
          o.kind = OpKind::kSt;
          o.reg = static_cast<uint8_t>(zo.reg.value - ZYDIS_REGISTER_ST0);
        } else if (cls == ZYDIS_REGCLASS_MMX) {
          o.kind = OpKind::kMmx;
          o.reg = static_cast<uint8_t>(zo.reg.value - ZYDIS_REGISTER_MM0);
        } else {
          o.kind = OpKind::kOther;  // no handler reads other register classes
          insn.fn = h_ud;
          insn.ends_block = true;
        }
        break;
      }
      case ZYDIS_OPERAND_TYPE_MEMORY: {
        o.kind = OpKind::kMem;
        insn.mem.seg = segment_number(zo.mem.segment);
        bool h;
        insn.mem.base = zo.mem.base == ZYDIS_REGISTER_NONE ? kNoReg : gpr_number(zo.mem.base, &h);
        insn.mem.index = zo.mem.index == ZYDIS_REGISTER_NONE ? kNoReg : gpr_number(zo.mem.index, &h);
        insn.mem.scale = zo.mem.scale ? zo.mem.scale : 1;
        insn.mem.disp = zo.mem.disp.has_displacement ? zo.mem.disp.value : 0;
        break;
      }
      case ZYDIS_OPERAND_TYPE_POINTER:
        o.kind = OpKind::kImm;
        insn.imm = zo.ptr.offset;
        insn.imm2 = zo.ptr.segment;
        break;
      case ZYDIS_OPERAND_TYPE_IMMEDIATE:
        o.kind = OpKind::kImm;
        if (!seen_imm) {
          insn.imm = zo.imm.is_signed ? static_cast<uint64_t>(zo.imm.value.s) : zo.imm.value.u;
          seen_imm = true;
        } else {
          insn.imm2 = zo.imm.value.u;
        }
        // An immediate combines with the destination at the destination's size.
        if (n > 0 && insn.op[0].size) o.size = insn.op[0].size;
        break;
      default: break;
    }
    ++n;
  }
  insn.nops = static_cast<uint8_t>(n);
  if (insn.fn == h_x87) {
    insn.imm = static_cast<uint64_t>(in.opcode) << 8 |
               static_cast<uint64_t>(in.raw.modrm.mod << 6 | in.raw.modrm.reg << 3 | in.raw.modrm.rm);
    insn.cc = x87_details(in);
  }
  insn.fn = fast_form(insn, code_size);
  return Status::kOk;
}

}  // namespace hostvisor::emu
