#include "hv/emu/jit/translator.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <optional>

#include "hv/emu/code_map.h"
#include "hv/emu/condition_mnemonics.h"
#include "hv/emu/flags.h"
#include "hv/emu/jit/emitter.h"
#include "hv/emu/jit/translate_atomic.h"
#include "hv/emu/jit/translate_divide.h"
#include "hv/emu/jit/translate_flags.h"
#include "hv/emu/jit/translate_string.h"
#include "hv/emu/leave_word.h"
#include "hv/emu/mmu.h"
#include "memory/guest_memory.h"

namespace hostvisor::emu::jit {
namespace {

constexpr unsigned kRax = 0, kRcx = 1, kRdx = 2, kRsp = 4, kRbp = 5, kRsi = 6, kRdi = 7;
// Callee-saved host registers the guest's values or the checks' scratch
// registers displace (SysV ABI).
constexpr unsigned kCalleeSaved[] = {3, 5, 12, 13, 14, 15};

// The translated code's frame, shared by every translation (so chaining
// needs no prologue), below the Cpu pointer and the callee-saved registers
// the entry routine pushed: three scratch slots (the guest values of the
// registers a soft-TLB check borrows), the guest's arithmetic flags
// whenever the host's are not theirs (a PUSHFQ image), the RIP a return to
// the run loop leaves at, and the jump target of the entry routine and of
// a jump cache hit. (The chain budget, instructions chained blocks may
// still start, and the chain count are in XMM15, below; the leave word a
// chain entry compares is named by its address.)
constexpr int32_t kSlotS = 0, kSlotT = 8, kSlotU = 16, kSlotFlags = 24, kSlotRip = 32, kSlotTarget = 40,
                  kFrameBytes = 48, kSlotCpu = 48;

// The register convention of translated code: from the entry routine to
// the exit routine, guest GPR n lives in host GPR n (all but RSP, which
// stays in Cpu::gpr[4]: the host's is the stack pointer), across chained
// entries and jump cache hits too, so a block boundary moves no register.
constexpr uint16_t kLive = 0xffef;

// The entry routine: enter(cpu, translation) loads the guest's registers
// and jumps into the translation; the translated code leaves the guest's
// registers, flags, RIP and the budget in the Cpu (JitRun) wherever it
// returns, through the exit routine.
using Entry = void (*)(Cpu*, const uint8_t*);

// A chained run returns to the run loop after this many instructions at
// most, so the instruction limit and the checks the run loop makes between
// blocks (and the translated code does not: the CodeMap epoch, another
// vCPU's code writes) are never put off for long.
constexpr int64_t kChainBudget = 1 << 14;

// The chain budget and the chain count live in XMM15 (low and high
// quadword) from the entry routine to the exit routine, not in frame slots:
// every block entry updates them, and a read-modify-write of a frame slot
// made each chained entry wait for the previous one's store (store
// forwarding, some 5 cycles per block: the loop-carried path of a loop of
// small blocks). One PADDQ of a 16-byte constant {-instructions, 1} from
// the code (a RIP-relative memory operand, 16-byte aligned) updates both, and
// PTEST against XMM13 = the sign bits (PCMPEQD; PSLLQ 63: no memory) says
// whether the budget went negative. Translated code uses no other XMM
// register (SSE instructions are not translated) but XMM8..XMM12, where the
// jump cache lookup and the block-ending CALL/RET keep five guest registers
// while they use the host's as scratch; the refill routine, the one call
// out of it, keeps XMM8..XMM12 and XMM15 and rebuilds XMM13.
void emit_sign_mask(Emitter& e) {
  e.bytes({0x66, 0x45, 0x0f, 0x76, 0xed});        // pcmpeqd xmm13, xmm13
  e.bytes({0x66, 0x41, 0x0f, 0x73, 0xf5, 0x3f});  // psllq xmm13, 63
}

// `reg` (a linear address) = the byte offset of its page's entry in a TLB
// array: ((reg >> 12) & (kTlbSize - 1)) * 40 as SHR, AND, LEA (x5; the x8
// folded into the shift and mask), 2 cycles shorter than IMUL on the
// dependent path of every soft-TLB check.
static_assert(sizeof(TlbEntry) == 40 && sizeof(JumpCacheEntry) == 32);
void emit_tlb_offset(Emitter& e, unsigned reg) {
  e.shr_imm(reg, 9);
  e.and_imm(reg, static_cast<int32_t>((kTlbSize - 1) << 3));
  e.lea(reg, reg, reg, 4, 0);
}

#define CPU_FIELD(f) static_cast<int32_t>(offsetof(Cpu, f))

int32_t gpr_offset(unsigned reg) { return static_cast<int32_t>(offsetof(Cpu, gpr) + reg * sizeof(uint64_t)); }

// A general-purpose register the host code may hold the guest's value in:
// any but RSP, which stays the host's stack pointer.
bool plain_gpr(const Operand& o) { return o.reg < 16 && (o.reg != kRsp || o.high8); }

enum class FlagEffect { kNone, kAll, kSome, kRead };

// The sign extensions of RAX (into RAX, or into RDX:RAX): no explicit operands.
bool is_sign_extension(uint16_t m) {
  switch (m) {
    case ZYDIS_MNEMONIC_CBW:
    case ZYDIS_MNEMONIC_CWDE:
    case ZYDIS_MNEMONIC_CDQE:
    case ZYDIS_MNEMONIC_CWD:
    case ZYDIS_MNEMONIC_CDQ:
    case ZYDIS_MNEMONIC_CQO: return true;
    default: return false;
  }
}

bool writes_rdx_too(uint16_t m) {
  return m == ZYDIS_MNEMONIC_CWD || m == ZYDIS_MNEMONIC_CDQ || m == ZYDIS_MNEMONIC_CQO;
}

// PUSH r64 / PUSH imm and POP r64 (64-bit operand size): the guest's stack
// through a soft-TLB check, RSP kept in the Cpu.
bool is_stack_op(const Insn& insn) {
  return insn.mnemonic == ZYDIS_MNEMONIC_PUSH || insn.mnemonic == ZYDIS_MNEMONIC_POP;
}

// How a translatable instruction changes the arithmetic flags. kSome: it
// keeps some of them (INC/DEC keep CF, rotates keep SF ZF AF PF, a shift by
// CL may keep all) or reads them (ADC, SBB), so it reads the ones before it
// too. kRead: it reads them and writes none (CMOVcc, SETcc).
FlagEffect writes_flags(const Insn& insn) {
  if (is_cmovcc(insn.mnemonic) || is_setcc(insn.mnemonic)) return FlagEffect::kRead;
  if (is_sign_extension(insn.mnemonic)) return FlagEffect::kNone;
  if (is_divide(insn)) return FlagEffect::kNone;  // the interpreter keeps them (undefined): so does the translation
  if (is_pushf(insn)) return FlagEffect::kRead;
  if (is_string_move_or_store(insn) || is_cli_or_sti(insn)) return FlagEffect::kNone;
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_ADC:
    case ZYDIS_MNEMONIC_SBB: return FlagEffect::kSome;
    case ZYDIS_MNEMONIC_NOP:
    case ZYDIS_MNEMONIC_XCHG:
    case ZYDIS_MNEMONIC_PUSH:
    case ZYDIS_MNEMONIC_POP:
    case ZYDIS_MNEMONIC_MOV:
    case ZYDIS_MNEMONIC_MOVZX:
    case ZYDIS_MNEMONIC_MOVSX:
    case ZYDIS_MNEMONIC_MOVSXD:
    case ZYDIS_MNEMONIC_NOT:
    case ZYDIS_MNEMONIC_LEA: return FlagEffect::kNone;
    case ZYDIS_MNEMONIC_INC:
    case ZYDIS_MNEMONIC_DEC: return FlagEffect::kSome;
    case ZYDIS_MNEMONIC_BSWAP: return FlagEffect::kNone;
    // CF = the bit; ZF kept (OF SF AF PF undefined: the host's, as two CPU
    // models differ there).
    case ZYDIS_MNEMONIC_BT:
    case ZYDIS_MNEMONIC_BTS:
    case ZYDIS_MNEMONIC_BTR:
    case ZYDIS_MNEMONIC_BTC: return FlagEffect::kSome;
    case ZYDIS_MNEMONIC_SHL:
    case ZYDIS_MNEMONIC_SHR:
    case ZYDIS_MNEMONIC_SAR:
    case ZYDIS_MNEMONIC_ROL:
    case ZYDIS_MNEMONIC_ROR: {
      if (insn.nops < 2 || insn.op[1].kind != OpKind::kImm) return FlagEffect::kSome;  // by CL: 0 keeps them
      const uint64_t count = insn.imm & (insn.opsize == 8 ? 63 : 31);
      if (count == 0) return FlagEffect::kNone;
      const bool rotate = insn.mnemonic == ZYDIS_MNEMONIC_ROL || insn.mnemonic == ZYDIS_MNEMONIC_ROR;
      return rotate ? FlagEffect::kSome : FlagEffect::kAll;
    }
    default: return FlagEffect::kAll;
  }
}

// The memory operand of a translatable instruction, or -1.
int mem_operand(const Insn& insn) {
  if (insn.mnemonic == ZYDIS_MNEMONIC_LEA || insn.mnemonic == ZYDIS_MNEMONIC_NOP) return -1;
  for (unsigned i = 0; i < insn.nops; ++i)
    if (insn.op[i].kind == OpKind::kMem) return static_cast<int>(i);
  return -1;
}

// How the block's last instruction, when it is a branch the translator
// takes, ends the translation: a Jcc rel or JMP rel as a compare-and-exit
// to constant RIPs, CALL rel32 as a push of the return address and an exit
// to its constant target, RET (imm16) as a pop and an exit to the RIP it
// popped. All of 64-bit operand size and without prefixes.
// JMP r/m64 and CALL r/m64 (FF /4, FF /2) as a load of the target (a
// register, or memory through a soft-TLB check), CALL's push, and the
// jump cache.
enum class Final { kNone, kJcc, kJmp, kCall, kRet, kJmpIndirect, kCallIndirect };

Final final_branch(const Insn& insn, const uint8_t* bytes) {
  if (insn.opsize != 8 || insn.prefixes != 0) return Final::kNone;
  if (insn.mnemonic == ZYDIS_MNEMONIC_RET) {
    // Near RET only (C3, C2 iw); the far ones change CS.
    if (insn.len == 1 && bytes[0] == 0xc3) return Final::kRet;
    if (insn.len == 3 && bytes[0] == 0xc2) return Final::kRet;
    return Final::kNone;
  }
  if ((insn.mnemonic == ZYDIS_MNEMONIC_JMP || insn.mnemonic == ZYDIS_MNEMONIC_CALL) && insn.nops == 1 &&
      insn.op[0].size == 8) {
    const Final f = insn.mnemonic == ZYDIS_MNEMONIC_JMP ? Final::kJmpIndirect : Final::kCallIndirect;
    const Operand& o = insn.op[0];
    if (o.kind == OpKind::kReg) return o.reg < 16 && !o.high8 ? f : Final::kNone;
    if (o.kind != OpKind::kMem) return Final::kNone;
    const MemRef& m = insn.mem;
    if (insn.addrsize != 8 || m.index == kRipReg || m.disp < INT32_MIN || m.disp > INT32_MAX) return Final::kNone;
    return f;
  }
  if (insn.nops != 1 || insn.op[0].kind != OpKind::kImm) return Final::kNone;
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_CALL: return insn.len == 5 && bytes[0] == 0xe8 ? Final::kCall : Final::kNone;
    case ZYDIS_MNEMONIC_JMP: return Final::kJmp;
    default: return is_jcc(insn.mnemonic) ? Final::kJcc : Final::kNone;
  }
}

// Whether the memory access writes (a store or a read-modify-write: both
// go through the write TLB, whose entries imply the page is readable too).
bool writes_memory(const Insn& insn, int mem) {
  if (mem != 0) return false;
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_CMP:
    case ZYDIS_MNEMONIC_TEST:
    case ZYDIS_MNEMONIC_DIV:
    case ZYDIS_MNEMONIC_IDIV:
    case ZYDIS_MNEMONIC_BT: return false;
    default: return true;
  }
}

// Whether the instruction names RSP as a register operand or LEA's base.
bool names_rsp(const Insn& insn) {
  for (unsigned i = 0; i < insn.nops; ++i) {
    const Operand& o = insn.op[i];
    if (o.kind == OpKind::kReg && o.reg == kRsp && !o.high8) return true;
  }
  return insn.mnemonic == ZYDIS_MNEMONIC_LEA && insn.mem.base == kRsp;
}

// The forms with RSP the translator takes: 64-bit MOV, ALU and LEA without
// a memory access (function prologues and epilogues: MOV RBP, RSP; SUB RSP,
// imm; LEA RSP, [RBP - n]), run on a scratch register holding the guest's
// RSP (the host's RSP stays the host's stack pointer).
bool rsp_operand_form(const Insn& insn) {
  if (insn.opsize != 8 || insn.addrsize != 8) return false;
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_LEA: return true;
    case ZYDIS_MNEMONIC_MOV:
    case ZYDIS_MNEMONIC_ADD:
    case ZYDIS_MNEMONIC_SUB:
    case ZYDIS_MNEMONIC_AND:
    case ZYDIS_MNEMONIC_OR:
    case ZYDIS_MNEMONIC_XOR:
    case ZYDIS_MNEMONIC_CMP:
    case ZYDIS_MNEMONIC_TEST:
      for (unsigned i = 0; i < insn.nops; ++i)
        if (insn.op[i].kind == OpKind::kMem) return false;
      return true;
    default: return false;
  }
}

// Whether the instruction writes its first operand, RSP (not CMP or TEST).
bool writes_rsp(const Insn& insn) {
  if (insn.mnemonic == ZYDIS_MNEMONIC_CMP || insn.mnemonic == ZYDIS_MNEMONIC_TEST) return false;
  return insn.nops > 0 && insn.op[0].kind == OpKind::kReg && insn.op[0].reg == kRsp;
}

// The guest encoding with every RSP in its ModRM (the reg field or the
// r/m of a register form, where Zydis says the operand is encoded: a reg
// field of 4 may be an opcode extension) and SIB base replaced by register
// `u` (a low register other than RSP and RBP, so neither REX nor the
// addressing form changes). False for an encoding that names RSP elsewhere.
bool replace_rsp(const ZydisDecoder& decoder, const uint8_t* bytes, size_t length, unsigned u,
                 std::vector<uint8_t>& out) {
  ZydisDecodedInstruction in;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, bytes, length, &in, ops))) return false;
  if (!(in.attributes & ZYDIS_ATTRIB_HAS_MODRM)) return false;
  out.assign(bytes, bytes + in.length);
  uint8_t& modrm = out[in.raw.modrm.offset];
  bool replaced = false;
  for (unsigned i = 0; i < in.operand_count_visible; ++i) {
    const ZydisDecodedOperand& op = ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER && op.reg.value == ZYDIS_REGISTER_RSP) {
      if (op.encoding == ZYDIS_OPERAND_ENCODING_MODRM_REG) {
        modrm = static_cast<uint8_t>((modrm & ~0x38) | (u << 3));
      } else if (op.encoding == ZYDIS_OPERAND_ENCODING_MODRM_RM) {
        modrm = static_cast<uint8_t>((modrm & ~7) | u);
      } else {
        return false;
      }
      replaced = true;
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.base == ZYDIS_REGISTER_RSP) {
      if (!(in.attributes & ZYDIS_ATTRIB_HAS_SIB)) return false;
      uint8_t& sib = out[in.raw.sib.offset];
      sib = static_cast<uint8_t>((sib & ~7) | u);
      replaced = true;
    }
  }
  return replaced;
}

// The registers an instruction names, as a mask.
uint16_t named_registers(const Insn& insn) {
  if (insn.mnemonic == ZYDIS_MNEMONIC_NOP) return 0;  // its operands are never read
  uint16_t named = 0;
  if (is_sign_extension(insn.mnemonic)) named = writes_rdx_too(insn.mnemonic) ? 0x5 : 0x1;
  if (is_divide(insn)) named = 0x5;  // RDX:RAX
  if (is_atomic_rmw(insn)) named |= atomic_implicit_registers(insn);
  if (is_string_move_or_store(insn)) named |= string_registers(insn);
  for (unsigned i = 0; i < insn.nops; ++i) {
    const Operand& o = insn.op[i];
    if (o.kind == OpKind::kReg) named |= static_cast<uint16_t>(1u << o.reg);  // AH..BH are 0..3 + high8
    if (o.kind == OpKind::kMem || insn.mnemonic == ZYDIS_MNEMONIC_LEA) {
      if (insn.mem.base < 16) named |= static_cast<uint16_t>(1u << insn.mem.base);
      if (insn.mem.index < 16) named |= static_cast<uint16_t>(1u << insn.mem.index);
    }
  }
  return named;
}

// The registers a soft-TLB check borrows for an instruction it does not
// name: S (the address), T (the last byte's page) and U (the TLB entry,
// then the host address the instruction's memory operand becomes). U is a
// low register other than RSP and RBP, so [U] needs neither a REX prefix
// (which would turn AH..BH into SPL..DIL) nor a SIB byte or displacement.
struct Scratch {
  unsigned s, t, u;
  // S is not borrowed: the check reads the instruction's own address
  // registers (a memory operand [base + index*scale + disp]).
  bool no_s = false;
};
Scratch pick_scratch(uint16_t named) {
  static constexpr unsigned kLow[] = {kRax, kRcx, kRdx, 3, 6, kRdi};
  static constexpr unsigned kAny[] = {kRax, kRcx, kRdx, 6, kRdi, 8, 9, 10, 11, 3, kRbp, 12, 13, 14, 15};
  Scratch sc{kNoBase, kNoBase, kNoBase};
  for (unsigned r : kLow)
    if (!(named & (1u << r))) {
      sc.u = r;
      break;
    }
  for (unsigned r : kAny) {
    if ((named & (1u << r)) || r == sc.u) continue;
    if (sc.s == kNoBase) {
      sc.s = r;
    } else {
      sc.t = r;
      break;
    }
  }
  return sc;
}

// One translated instruction with a memory operand: what its re-encoding
// with [U] in place of the guest's operand keeps of its bytes.
struct Rewritten {
  std::vector<uint8_t> head;  // legacy prefixes (no segment override), REX, opcode
  uint8_t modrm_reg = 0;      // the ModRM reg field (a register or an opcode extension)
  std::vector<uint8_t> tail;  // immediates
};

// Splits the guest encoding at its memory operand. False for encodings the
// rewrite does not handle (other opcode maps).
bool split_encoding(const ZydisDecoder& decoder, const uint8_t* bytes, size_t length, Rewritten& out) {
  ZydisDecodedInstruction in;
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder, nullptr, bytes, length, &in))) return false;
  if (!(in.attributes & ZYDIS_ATTRIB_HAS_MODRM) || in.raw.modrm.mod == 3) return false;
  unsigned opcode_len;
  switch (in.opcode_map) {
    case ZYDIS_OPCODE_MAP_DEFAULT: opcode_len = 1; break;
    case ZYDIS_OPCODE_MAP_0F: opcode_len = 2; break;
    default: return false;
  }
  const unsigned modrm = in.raw.modrm.offset;
  if (modrm < opcode_len) return false;
  const unsigned opcode_at = modrm - opcode_len;
  const bool has_rex = in.attributes & ZYDIS_ATTRIB_HAS_REX;
  const unsigned prefix_end = has_rex ? opcode_at - 1 : opcode_at;
  if (has_rex && (opcode_at == 0 || (bytes[opcode_at - 1] & 0xf0) != 0x40)) return false;
  out.head.clear();
  for (unsigned i = 0; i < prefix_end; ++i) {
    const uint8_t b = bytes[i];
    if (b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0x64 || b == 0x65) continue;  // the address has it
    if (b == 0x67) return false;
    out.head.push_back(b);
  }
  // REX keeps W, R and X (the guest's index, which the rewritten operand
  // may keep: without a SIB byte it means nothing); B named the guest's
  // base, gone now.
  if (has_rex) out.head.push_back(static_cast<uint8_t>(bytes[opcode_at - 1] & 0xfe));
  out.head.insert(out.head.end(), bytes + opcode_at, bytes + modrm);
  out.modrm_reg = in.raw.modrm.reg;
  unsigned after = modrm + 1;
  if (in.attributes & ZYDIS_ATTRIB_HAS_SIB) after = in.raw.sib.offset + 1u;
  if (in.raw.disp.size) after = in.raw.disp.offset + in.raw.disp.size / 8u;
  out.tail.assign(bytes + after, bytes + in.length);
  return true;
}

// The refill routine's C++ half: fills the soft-TLB entry of `linear`
// (read or write by `how` bit 8, `how` & 0xff bytes) when the access is
// to RAM within one page and the walk allows it. 1 when the translated
// check will now hit. A fault or MMIO is left to the interpreter, which
// runs the instruction: nothing may change that it would not change
// itself (the walk's A/D bits it sets as well; CR2 is put back).
// Called from translated code: no exception may leave it.
uint64_t refill_tlb(Cpu* cpu, uint64_t linear, uint64_t how) noexcept {
  const unsigned size = how & 0xff;
  const bool write = how & 0x100;
  if ((linear & 0xfff) + size > 0x1000 || !is_canonical(linear)) {
    ++cpu->jit.tlb_refill_failures;
    return 0;
  }
  const uint64_t cr2 = cpu->cr2;
  try {
    const TlbEntry& e = tlb_fill(*cpu, linear, write ? Access::kWrite : Access::kRead, cpu->cpl == 3);
    if (e.host) {
      ++cpu->jit.tlb_refills;
      return 1;
    }
  } catch (...) {
    cpu->cr2 = cr2;
  }
  ++cpu->jit.tlb_refill_failures;
  return 0;
}

}  // namespace

bool translatable(const Insn& insn) {
  // NOP (0F 1F /0 included) reads nothing: it becomes no code at all.
  if (insn.mnemonic == ZYDIS_MNEMONIC_NOP) return !insn.ends_block && !(insn.prefixes & ~kPrefixSegOverride);
  // CBW..CQO name RAX (and RDX) implicitly; copied as they are.
  if (is_sign_extension(insn.mnemonic)) return insn.prefixes == 0 && !insn.ends_block;
  if (is_pushf(insn)) return pushf_translatable(insn);
  if (is_string_move_or_store(insn)) return string_translatable(insn);  // ends its block
  if (is_cli_or_sti(insn)) return true;                                 // ends its block
  if (is_stack_op(insn)) {
    // 64-bit PUSH/POP of a register other than RSP, or PUSH of an immediate.
    if (insn.nops != 1 || insn.opsize != 8 || insn.prefixes != 0 || insn.ends_block) return false;
    const Operand& o = insn.op[0];
    if (o.kind == OpKind::kImm) return insn.mnemonic == ZYDIS_MNEMONIC_PUSH;
    return o.kind == OpKind::kReg && o.size == 8 && plain_gpr(o);
  }
  if (is_cmovcc(insn.mnemonic) || is_setcc(insn.mnemonic)) {
    // As themselves, the host's flags being the guest's.
  } else if (is_divide(insn)) {
    if (!divide_translatable(insn)) return false;
  } else if (is_atomic_rmw(insn)) {
    if (!atomic_translatable(insn)) return false;
  } else if (insn.mnemonic == ZYDIS_MNEMONIC_XCHG) {
    // Only between registers: with memory it is an implied LOCK.
    for (unsigned i = 0; i < insn.nops; ++i)
      if (insn.op[i].kind != OpKind::kReg) return false;
  } else
    switch (insn.mnemonic) {
      case ZYDIS_MNEMONIC_MOV:
      case ZYDIS_MNEMONIC_MOVZX:
      case ZYDIS_MNEMONIC_MOVSX:
      case ZYDIS_MNEMONIC_MOVSXD:
      case ZYDIS_MNEMONIC_ADD:
      case ZYDIS_MNEMONIC_ADC:
      case ZYDIS_MNEMONIC_SBB:
      case ZYDIS_MNEMONIC_SUB:
      case ZYDIS_MNEMONIC_AND:
      case ZYDIS_MNEMONIC_OR:
      case ZYDIS_MNEMONIC_XOR:
      case ZYDIS_MNEMONIC_CMP:
      case ZYDIS_MNEMONIC_TEST:
      case ZYDIS_MNEMONIC_INC:
      case ZYDIS_MNEMONIC_DEC:
      case ZYDIS_MNEMONIC_NOT:
      case ZYDIS_MNEMONIC_NEG:
      case ZYDIS_MNEMONIC_LEA:
      case ZYDIS_MNEMONIC_SHL:
      case ZYDIS_MNEMONIC_SHR:
      case ZYDIS_MNEMONIC_SAR:
      case ZYDIS_MNEMONIC_ROL:
      case ZYDIS_MNEMONIC_ROR: break;
      case ZYDIS_MNEMONIC_BSWAP:
        if (insn.nops != 1 || insn.op[0].kind != OpKind::kReg) return false;
        break;
      case ZYDIS_MNEMONIC_BT:
      case ZYDIS_MNEMONIC_BTS:
      case ZYDIS_MNEMONIC_BTR:
      case ZYDIS_MNEMONIC_BTC:
        // A register bit offset with memory addresses a bit string beyond
        // the operand (up to 2^63 bits away): the interpreter's.
        if (insn.nops != 2 || (insn.op[0].kind == OpKind::kMem && insn.op[1].kind != OpKind::kImm)) return false;
        break;
      case ZYDIS_MNEMONIC_IMUL:
        if (insn.nops < 2) return false;  // the one-operand form writes RDX:RAX
        break;
      default: return false;
    }
  // A segment override only matters for FS and GS (added to the address);
  // REP is never taken, LOCK only on CMPXCHG/XADD (translate_atomic.h).
  const uint8_t allowed = kPrefixSegOverride | (is_atomic_rmw(insn) ? kPrefixLock : 0);
  if ((insn.prefixes & ~allowed) != 0 || insn.ends_block || insn.nops == 0) return false;
  bool has_mem = false;
  const bool rsp = names_rsp(insn);
  if (rsp && !rsp_operand_form(insn)) return false;
  for (unsigned i = 0; i < insn.nops; ++i) {
    const Operand& o = insn.op[i];
    switch (o.kind) {
      case OpKind::kReg:
        if (!plain_gpr(o) && !rsp) return false;
        break;
      case OpKind::kImm: break;
      case OpKind::kMem: {
        const MemRef& m = insn.mem;
        if (insn.mnemonic == ZYDIS_MNEMONIC_LEA) {
          // LEA computes an address without touching memory; RIP-relative
          // forms would compute the host's RIP (RSP-based ones are rewritten
          // to a register holding the guest's RSP).
          if (i != 1 || m.base == kRipReg || m.index == kRsp) return false;
          if (insn.prefixes & kPrefixSegOverride) return false;
          break;
        }
        // Any 64-bit address: a soft-TLB check replaces the operand by the
        // host address (RSP and RIP bases are computed from the guest's).
        if (has_mem || rsp || insn.addrsize != 8 || m.index == kRsp || m.index == kRipReg) return false;
        if (m.disp < INT32_MIN || m.disp > INT32_MAX) return false;
        if (o.size != 1 && o.size != 2 && o.size != 4 && o.size != 8) return false;
        has_mem = true;
        break;
      }
      default: return false;
    }
  }
  return true;
}

Result<std::unique_ptr<Translator>> Translator::create(size_t code_cache_bytes) {
  auto cache = CodeCache::create(code_cache_bytes);
  if (!cache) return cache.error();
  return std::unique_ptr<Translator>(new Translator(std::move(*cache)));
}

Translator::Translator(std::unique_ptr<CodeCache> cache) : cache_(std::move(cache)) {
  ZydisDecoderInit(&decoder_, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  install_runtime();
}

// The refill routines, first in the cache (so after a flush at the same
// address again): called by a check's tag miss with the Cpu, the linear
// address and size | write << 8 on the stack. They keep every register
// (the guest's live in them) and return ZF=0 when the entry is filled.
// The budget (XMM15) is kept across the call, XMM13 rebuilt after it.
// The second routine keeps XMM8..XMM12 too, for the checks of a
// block-ending CALL/RET, which hold guest registers there; a check in a
// block's body calls the first, which saves five MOVQs less (the tlb
// workload refills at every access).
static void emit_refill_routine(Emitter& e, bool keep_low_xmm) {
  static constexpr unsigned kSaved[] = {kRax, kRcx, kRdx, kRsi, kRdi, 8, 9, 10, 11, 3};
  for (unsigned r : kSaved) e.push(r);
  const int32_t frame = keep_low_xmm ? 96 : 16;
  e.lea(kRsp, kRsp, kNoBase, 1, -frame);
  e.bytes({0xf3, 0x44, 0x0f, 0x7f, 0x3c, 0x24});  // movdqu [rsp], xmm15
  if (keep_low_xmm)
    for (uint8_t x = 0; x < 5; ++x)  // movq [rsp + 16 + 8 * x], xmm(8 + x)
      e.bytes({0x66, 0x44, 0x0f, 0xd6, static_cast<uint8_t>(0x44 | (x << 3)), 0x24, static_cast<uint8_t>(16 + 8 * x)});
  const int32_t args = 8 * static_cast<int32_t>(std::size(kSaved) + 1) + frame;  // past the saves and the return
  e.load(kRdx, kRsp, args);
  e.load(kRsi, kRsp, args + 8);
  e.load(kRdi, kRsp, args + 16);
  e.mov_rr(3, kRsp);     // RBX: the ABI keeps it across the call
  e.and_imm(kRsp, -16);  // the ABI's alignment, whatever the depth of the caller
  e.mov_imm(kRax, reinterpret_cast<uint64_t>(&refill_tlb));
  e.bytes({0xff, 0xd0});  // call rax
  e.mov_rr(kRsp, 3);
  e.bytes({0x85, 0xc0});                          // test eax, eax
  e.bytes({0xf3, 0x44, 0x0f, 0x6f, 0x3c, 0x24});  // movdqu xmm15, [rsp]
  if (keep_low_xmm)
    for (uint8_t x = 0; x < 5; ++x)  // movq xmm(8 + x), [rsp + 16 + 8 * x]
      e.bytes({0xf3, 0x44, 0x0f, 0x7e, static_cast<uint8_t>(0x44 | (x << 3)), 0x24, static_cast<uint8_t>(16 + 8 * x)});
  e.lea(kRsp, kRsp, kNoBase, 1, frame);
  emit_sign_mask(e);
  for (int i = static_cast<int>(std::size(kSaved)) - 1; i >= 0; --i) e.pop(kSaved[i]);
  e.byte(0xc3);
}

void Translator::install_runtime() {
  Emitter e;
  emit_refill_routine(e, false);
  const size_t keep_low_xmm_at = e.size();
  emit_refill_routine(e, true);
  // INT3 up to 304 bytes: where every translation after the shared
  // routines falls within a 64-byte line follows from their length, and the
  // crc workload's one- and two-instruction blocks ran 6% slower when the
  // refill routine grew by 79 bytes; an earlier round had 112 bytes here,
  // and 304 is that plus three lines, so the placement is that round's.
  // (A 64-byte alignment of each translation measured between the two.)
  constexpr size_t kRefillBytes = 304;
  while (e.size() < kRefillBytes) e.byte(0xcc);
  refill_ = cache_->add(e.code());
  refill_keep_low_xmm_ = refill_ + keep_low_xmm_at;

  // The entry routine, enter(cpu, translation): the frame, the guest's
  // registers into the host's (the convention above), then the
  // translation's body.
  Emitter in;
  for (unsigned r : kCalleeSaved) in.push(r);
  in.push(kRdi);  // the Cpu
  in.lea(kRsp, kRsp, kNoBase, 1, -kFrameBytes);
  in.store(kRsp, kSlotTarget, kRsi);
  in.load(kRax, kRdi, CPU_FIELD(rflags));
  in.store(kRsp, kSlotFlags, kRax);
  // The budget into XMM15's low half (the chain count, its high half, 0).
  in.bytes({0xf3, 0x44, 0x0f, 0x7e, 0xbf});  // movq xmm15, [rdi + disp32]
  in.u32(static_cast<uint32_t>(CPU_FIELD(jit.budget)));
  emit_sign_mask(in);
  for (unsigned r = 0; r < 16; ++r)
    if (r != kRsp && r != kRdi) in.load(r, kRdi, gpr_offset(r));
  in.load(kRdi, kRdi, gpr_offset(kRdi));
  in.jmp_mem(kRsp, kSlotTarget);
  enter_ = cache_->add(in.code());

  // The exit routine, jumped to (frame depth 0, the convention holding,
  // the RIP in its slot) wherever translated code returns to the run loop:
  // the guest's registers, flags, RIP and the budget into the Cpu.
  Emitter out;
  out.push(kRax);
  out.load(kRax, kRsp, 8 + kSlotCpu);
  for (unsigned r = 1; r < 16; ++r)
    if (r != kRsp) out.store(kRax, gpr_offset(r), r);
  out.pop(kRcx);  // the guest's RAX
  out.store(kRax, gpr_offset(kRax), kRcx);
  // cpu.rflags = (cpu.rflags & ~arith) | (the guest's & arith); the run
  // loop made the lazy flags explicit before entering (flags.op == kNone).
  out.load(kRcx, kRsp, kSlotFlags);
  out.and_imm(kRcx, static_cast<int32_t>(kArithFlags));
  out.load(kRdx, kRax, CPU_FIELD(rflags));
  out.and_imm(kRdx, static_cast<int32_t>(~kArithFlags));
  out.add_rr(kRdx, kRcx);
  out.store(kRax, CPU_FIELD(rflags), kRdx);
  out.load(kRcx, kRsp, kSlotRip);
  out.store(kRax, CPU_FIELD(rip), kRcx);
  out.bytes({0x66, 0x44, 0x0f, 0xd6, 0xb8});  // movq [rax + disp32], xmm15: the budget
  out.u32(static_cast<uint32_t>(CPU_FIELD(jit.budget)));
  out.bytes({0x66, 0x4c, 0x0f, 0x3a, 0x16, 0xf9, 0x01});  // pextrq rcx, xmm15, 1: the chain count
  out.add_load(kRcx, kRax, CPU_FIELD(jit.chains));
  out.store(kRax, CPU_FIELD(jit.chains), kRcx);
  out.lea(kRsp, kRsp, kNoBase, 1, kFrameBytes);
  out.pop(kRdi);
  for (int i = static_cast<int>(std::size(kCalleeSaved)) - 1; i >= 0; --i) out.pop(kCalleeSaved[i]);
  out.byte(0xc3);
  exit_ = cache_->add(out.code());
}

bool Translator::translate(Cpu& cpu, Block& block) {
  const auto started = std::chrono::steady_clock::now();
  block.native = nullptr;
  block.native_chain = nullptr;
  block.native_insns = 0;
  // The bytes are read again from guest memory: only while they are still
  // the ones the block was decoded from.
  if (cpu.code_size != 8 || !cpu.memory) return false;
  if (cpu.code && cpu.code->generation(block.phys) != block.generation) return false;
  const uint8_t* page = cpu.memory->host_pointer(GuestAddress(block.phys & ~0xfffull), 0x1000);
  if (!page) return false;
  const uint64_t rip = cpu.rip;
  const uint64_t start = block.phys & 0xfff;

  // Pass 1: how far the translation goes, the registers it loads, and the
  // flags: whether the host's must start as the guest's, and at every
  // instruction whether they hold the guest's already (a translated
  // instruction wrote them) and whether a later one needs them.
  struct Step {
    const Insn* insn;
    uint64_t offset;  // in the page
    int mem;          // memory operand, or -1
    bool stack;       // PUSH or POP: an access at the guest's RSP
    bool rsp;         // names RSP: runs as `rsp_form`, the guest's RSP in scratch.u
    std::vector<uint8_t> rsp_form;
    Scratch scratch;
    bool flags_valid_before;  // the host's flags are the guest's here
    bool flags_needed;        // ... and the instruction or a later one reads them, or the exit stores them
    bool cf_only;             // ... but only CF: an INC/DEC (which writes the rest) reads them first
    Rewritten rewritten;      // with a memory operand: its encoding around it
    bool divide;              // DIV/IDIV: checked first for what would raise #DE (translate_divide.h)
    bool string = false;      // MOVS/STOS: one whole dispatch within a page, or none (translate_string.h)
  };
  std::vector<Step> steps;
  uint64_t off = start;
  uint16_t used = 0;  // the guest registers the instructions name
  bool flags_in = false;
  bool written = false;
  for (const Insn& insn : block.insns) {
    if (!translatable(insn) || off + insn.len > 0x1000) break;
    Step step{&insn,
              off,
              mem_operand(insn),
              is_stack_op(insn) || is_pushf(insn),
              insn.mnemonic != ZYDIS_MNEMONIC_NOP && !is_stack_op(insn) && names_rsp(insn),
              {},
              {},
              flags_in || written,
              false,
              false,
              {},
              is_divide(insn)};
    step.string = is_string_move_or_store(insn);
    if (step.string) step.mem = -1;
    const uint16_t named = named_registers(insn);
    if (step.mem >= 0) {
      if (!split_encoding(decoder_, page + off, insn.len, step.rewritten)) break;
    }
    if (step.mem >= 0 || step.stack || step.rsp || step.divide || step.string || is_cli_or_sti(insn))
      step.scratch = pick_scratch(named);
    if (step.rsp && !replace_rsp(decoder_, page + off, insn.len, step.scratch.u, step.rsp_form)) break;
    used |= named;
    switch (writes_flags(insn)) {
      case FlagEffect::kNone: break;
      case FlagEffect::kAll: written = true; break;
      case FlagEffect::kSome:
        if (!written) flags_in = true;
        written = true;
        break;
      case FlagEffect::kRead:
        if (!written) flags_in = true;
        break;
    }
    off += insn.len;
    steps.push_back(step);
  }
  const unsigned count = static_cast<unsigned>(steps.size());
  // The block's last instruction, a branch, ends the translation with an
  // exit to each of its targets.
  Final final = count + 1 == block.insns.size() && off + block.insns.back().len <= 0x1000
                    ? final_branch(block.insns.back(), page + off)
                    : Final::kNone;
  uint64_t fallthrough = 0, taken = 0;
  if (final != Final::kNone) {
    const Insn& last = block.insns.back();
    fallthrough = rip + (off - start) + last.len;
    const bool constant = final == Final::kJcc || final == Final::kJmp || final == Final::kCall;
    if (constant) taken = fallthrough + last.imm;
    // A non-canonical target faults (#GP with RIP on the branch): the
    // interpreter's. (RET's and JMP/CALL r/m's are checked when loaded.)
    if (constant && !is_canonical(taken)) final = Final::kNone;
    if (final == Final::kJcc && !written) flags_in = true;
  }
  const bool branch = final != Final::kNone;
  used &= static_cast<uint16_t>(~(1u << kRsp));
  const unsigned total = count + (branch ? 1 : 0);
  if (total < kMinInsns && !branch) {
    // Too short to pay for entering and leaving host code (a block that
    // ends in a direct branch pays once chained).
    ++stats_.fallbacks;
    return false;
  }
  const bool store_flags = written || flags_in;
  for (unsigned i = 0; i < count; ++i) steps[i].flags_valid_before = flags_in || steps[i].flags_valid_before;
  // Which of the guest's flags the host's must hold before each
  // instruction: none, CF alone (the next reader is an INC/DEC, which
  // writes all the others; a loop's DEC after a check), or all.
  enum class Need { kNone, kCf, kAll };
  Need needed = store_flags ? Need::kAll : Need::kNone;  // the exits store them (and a Jcc reads them)
  for (int i = static_cast<int>(count) - 1; i >= 0; --i) {
    const uint16_t m = steps[i].insn->mnemonic;
    switch (writes_flags(*steps[i].insn)) {
      case FlagEffect::kNone: break;
      case FlagEffect::kAll: needed = Need::kNone; break;  // nothing reads the flags before it
      case FlagEffect::kSome:
        if (m == ZYDIS_MNEMONIC_INC || m == ZYDIS_MNEMONIC_DEC) {
          if (needed != Need::kNone) needed = Need::kCf;
          break;
        }
        needed = Need::kAll;
        break;
      case FlagEffect::kRead: needed = Need::kAll; break;
    }
    steps[i].flags_needed = needed != Need::kNone;
    steps[i].cf_only = needed == Need::kCf;
    // A memory instruction's side exit (a TLB miss: the interpreter runs it)
    // stores the flags its pushfq saved, so they must be the guest's when it
    // starts, even if it then writes them all itself.
    if ((steps[i].mem >= 0 || steps[i].stack || steps[i].divide || steps[i].string || is_cli_or_sti(*steps[i].insn)) &&
        steps[i].flags_valid_before)
      needed = Need::kAll;
  }
  // The block reads the flags before writing them, but only CF (it starts
  // with INC/DEC, no check before it that could store them).
  const bool cf_only_in = flags_in && needed == Need::kCf;

  const bool user = cpu.cpl == 3;
  const TlbMirror* const mirror = cpu.tlb.mirror.attach();
  // Every guest register but RSP is live in its host register all the time
  // (the convention): a register a check borrows is always saved.
  used = kLive;
  Emitter e;
  std::vector<size_t> to_exit;  // JMP rel32s to the exit routine
  // The 16-byte constants the code loads RIP-relative (placed after it),
  // and the disp32s that name each.
  std::vector<std::pair<std::array<int64_t, 2>, std::vector<size_t>>> constants;
  // PADDQ / PSUBQ xmm15, the constant {low, high}: a 16-byte memory
  // operand, which legacy SSE wants aligned (the constants are: below).
  constexpr uint8_t kPaddq = 0xd4, kPsubq = 0xfb;
  auto emit_xmm15_constant = [&](uint8_t opcode, int64_t low, int64_t high) {
    e.bytes({0x66, 0x44, 0x0f, opcode, 0x3d});  // op xmm15, [rip + disp32]
    const std::array<int64_t, 2> v{low, high};
    auto it = std::find_if(constants.begin(), constants.end(), [&](const auto& c) { return c.first == v; });
    if (it == constants.end()) it = constants.insert(constants.end(), {v, {}});
    it->second.push_back(e.size());
    e.u32(0);
  };
  // The budget (XMM15's low half) += n.
  auto emit_budget_add = [&](int32_t n) { emit_xmm15_constant(kPaddq, n, 0); };
  std::vector<size_t> refill_calls;           // CALL rel32s to the refill routine
  std::vector<size_t> refill_keep_xmm_calls;  // ... to the one that keeps XMM8..XMM12
  // Back to the run loop (frame depth 0, the convention holding, the RIP
  // in its slot): the exit routine stores the state into the Cpu.
  auto emit_leave = [&] {
    e.byte(0xe9);
    to_exit.push_back(e.size());
    e.u32(0);
  };
  // The RIP the exit routine leaves in the Cpu.
  auto emit_rip_out = [&](uint64_t next_rip) {
    if (static_cast<int64_t>(next_rip) == static_cast<int32_t>(next_rip)) {
      e.store_imm32(kRsp, kSlotRip, static_cast<int32_t>(next_rip));
    } else {
      e.push(kRax);
      e.mov_imm(kRax, next_rip);
      e.store(kRsp, 8 + kSlotRip, kRax);
      e.pop(kRax);
    }
  };
  // ++cpu.<field> (statistics), every register kept (the flags are not:
  // only where they are in their slot).
  auto emit_count = [&](int32_t field) {
    e.push(kRax);
    e.load(kRax, kRsp, 8 + kSlotCpu);
    e.add_mem_imm8(kRax, field, 1);
    e.pop(kRax);
  };
  // Guest RAX, RCX, RDX, RSI, RDI into XMM8..XMM12 (MOVQ: no memory, no
  // flags; a store to the Cpu and the load back cost more on the RET path),
  // RAX = the Cpu (so the jump cache lookup and the block-ending CALL/RET
  // have scratch registers), and back. The refill routine keeps XMM8..XMM12
  // across its call.
  auto spill_xmm = [](unsigned r) -> uint8_t {
    return r == kRax ? 0 : r == kRcx ? 1 : r == kRdx ? 2 : r == kRsi ? 3 : 4;
  };
  auto movq_to_xmm = [&](unsigned r) {  // movq xmm(8 + n), r
    e.bytes({0x66, 0x4c, 0x0f, 0x6e, static_cast<uint8_t>(0xc0 | (spill_xmm(r) << 3) | r)});
  };
  auto movq_from_xmm = [&](unsigned dst, unsigned r) {  // movq dst, xmm(8 + n of r)
    e.bytes({0x66, static_cast<uint8_t>(0x4c | (dst >= 8 ? 1 : 0)), 0x0f, 0x7e,
             static_cast<uint8_t>(0xc0 | (spill_xmm(r) << 3) | (dst & 7))});
  };
  // `rsi`: RSI too (a CALL rel32 that chains in its page needs no RSI).
  auto emit_spill_low = [&](bool rsi = true) {
    for (unsigned r : {kRax, kRcx, kRdx, kRsi, kRdi})
      if (r != kRsi || rsi) movq_to_xmm(r);
    e.load(kRax, kRsp, kSlotCpu);
  };
  auto emit_reload_low = [&](bool rsi = true) {
    for (unsigned r : {kRax, kRcx, kRdx, kRsi, kRdi})
      if (r != kRsi || rsi) movq_from_xmm(r, r);
  };
  auto spilled = [](unsigned r) { return r == kRax || r == kRcx || r == kRdx || r == kRsp || r == kRsi || r == kRdi; };
  // Puts the guest's state at a point `done` instructions into the block,
  // before `next_rip`, where the run loop or the next block finds it: the
  // flags into their slot (when `flags_valid`: the host's are the guest's;
  // `flags_pushed`: a check's PUSHFQ left them at [RSP]), the instructions
  // not run given back to the budget and the RIP into its slot (unless
  // kDynamicRip: the code after stores it). The registers stay where they
  // are (the convention).
  constexpr uint64_t kDynamicRip = 1ull << 63;  // never canonical (~0 is), never a constant target
  auto emit_state_out = [&](unsigned done, uint64_t next_rip, bool flags_valid, bool flags_pushed = false) {
    if (flags_pushed) {
      e.pop_mem(kRsp, kSlotFlags);
    } else if (flags_valid) {
      e.pushfq();
      e.pop_mem(kRsp, kSlotFlags);
    }
    if (done < total) emit_budget_add(static_cast<int32_t>(total - done));
    if (next_rip != kDynamicRip) emit_rip_out(next_rip);
  };
  // A chainable exit (the flags in their slot): a JMP rel32 that at first
  // falls through to a return recording it (CPU.jit.last_exit); the next
  // entry patches it to jump straight into the block at `next_rip` when
  // that is in this guest page. To another page through the jump cache
  // (so a changed mapping never leads to the wrong code).
  // `undo`, for a RET or JMP r/m64 whose target (RSI) was not checked
  // for canonical form before: a miss checks it (a hit's is, being a
  // block's RIP), and a non-canonical one puts back the guest's RSP
  // (`rsp_delta` added) and jumps there (before the branch, #GP).
  std::function<void(std::vector<size_t> * undo, int32_t rsp_delta)> emit_jump_cache_lookup;
  // `jcc_site`: the rel32 of a Jcc that jumps here, patched itself (one
  // taken branch, not two, once chained); else a JMP rel32 of its own.
  auto emit_exit_tail = [&](uint64_t next_rip, std::optional<size_t> jcc_site = std::nullopt) {
    if ((next_rip >> 12) != (rip >> 12)) {
      if (jcc_site) e.patch_rel32(*jcc_site, e.size());
      emit_spill_low();
      e.mov_imm(kRsi, next_rip);
      emit_jump_cache_lookup(nullptr, 0);
      return;
    }
    size_t site;
    if (jcc_site) {
      site = *jcc_site;
      e.patch_rel32(site, e.size());
    } else {
      e.byte(0xe9);
      site = e.size();
      e.u32(0);
    }
    e.push(kRax);
    e.push(kRcx);
    e.load(kRax, kRsp, 16 + kSlotCpu);
    e.bytes({0x48, 0x8d, 0x0d});  // lea rcx, [rip + disp32]: the site
    e.u32(static_cast<uint32_t>(static_cast<int32_t>(site) - static_cast<int32_t>(e.size() + 4)));
    e.store(kRax, CPU_FIELD(jit.last_exit), kRcx);
    e.mov_imm(kRcx, next_rip);
    e.store(kRax, CPU_FIELD(jit.last_exit_rip), kRcx);
    e.mov_imm(kRcx, (block.phys & ~0xfffull) | (user ? 1 : 0));
    e.store(kRax, CPU_FIELD(jit.last_exit_page), kRcx);
    e.pop(kRcx);
    e.pop(kRax);
    emit_rip_out(next_rip);
    emit_leave();
  };
  auto emit_exit = [&](unsigned done, uint64_t next_rip, bool flags_valid) {
    emit_state_out(done, kDynamicRip, flags_valid);
    emit_exit_tail(next_rip);
  };

  // With the flags in their slot, the low registers spilled (RAX the Cpu)
  // and the target RIP in RSI: the jump cache's entry for the target,
  // taken when its RIP matches and the fetch TLB still maps that RIP to
  // the entry's guest-physical page (so a changed mapping never leads to
  // the wrong code), into the target block's chain entry (which checks the
  // budget, the LAPIC, the kick and the code epoch) with the registers
  // back; else back to the run loop, noting the miss so the next entry
  // fills it.
  emit_jump_cache_lookup = [&](std::vector<size_t>* undo, int32_t rsp_delta) {
    e.mov_rr(kRcx, kRsi);
    e.mov_rr(kRdx, kRcx);
    e.shr_imm(kRdx, 12);
    e.xor_rr(kRdx, kRcx);
    e.and_imm(kRdx, kJumpCacheSize - 1);
    e.shl_imm(kRdx, 5);  // * sizeof(JumpCacheEntry)
    e.add_load(kRdx, kRax, CPU_FIELD(jit.jump_cache));
    const int32_t half = static_cast<int32_t>((user ? kJumpCacheSize : 0) * sizeof(JumpCacheEntry));
    std::vector<size_t> to_miss;
    e.cmp_load(kRcx, kRdx, half + static_cast<int32_t>(offsetof(JumpCacheEntry, rip)));
    to_miss.push_back(e.jcc32(0x5));  // jne
    e.mov_rr(kRsi, kRcx);
    e.shr_imm(kRsi, 12);
    e.mov_rr(kRdi, kRcx);
    emit_tlb_offset(e, kRdi);
    e.add_rr(kRdi, kRax);
    const int32_t fetch = static_cast<int32_t>(offsetof(Cpu, tlb) + offsetof(Tlb, e) +
                                               (static_cast<size_t>(user) * 3 + 2) * kTlbSize * sizeof(TlbEntry));
    e.cmp_load(kRsi, kRdi, fetch + static_cast<int32_t>(offsetof(TlbEntry, tag)));
    to_miss.push_back(e.jcc32(0x5));  // jne
    e.load(kRsi, kRdi, fetch + static_cast<int32_t>(offsetof(TlbEntry, phys)));
    e.cmp_load(kRsi, kRdx, half + static_cast<int32_t>(offsetof(JumpCacheEntry, phys)));
    to_miss.push_back(e.jcc32(0x5));  // jne
    e.add_mem_imm8(kRax, CPU_FIELD(jit.jump_hits), 1);
    e.load(kRdx, kRdx, half + static_cast<int32_t>(offsetof(JumpCacheEntry, code)));
    e.store(kRsp, kSlotTarget, kRdx);
    emit_reload_low();
    e.jmp_mem(kRsp, kSlotTarget);
    for (size_t at : to_miss) e.patch_rel32(at, e.size());
    if (undo) {
      e.mov_imm(kRdx, 1ull << 47);
      e.add_rr(kRdx, kRcx);
      e.shr_imm(kRdx, 48);
      const size_t canonical = e.jcc32(0x4);  // jz: bits 63..47 all equal
      if (rsp_delta) {
        e.load(kRsi, kRax, gpr_offset(kRsp));
        e.lea(kRsi, kRsi, kNoBase, 1, -rsp_delta);
        e.store(kRax, gpr_offset(kRsp), kRsi);
      }
      e.byte(0xe9);  // jmp rel32
      undo->push_back(e.size());
      e.u32(0);
      e.patch_rel32(canonical, e.size());
    }
    e.bytes({0xc6, 0x80});  // mov byte [rax + disp32], 1
    e.u32(static_cast<uint32_t>(CPU_FIELD(jit.jump_missed)));
    e.byte(1);
    e.add_mem_imm8(kRax, CPU_FIELD(jit.jump_misses), 1);
    e.store(kRsp, kSlotRip, kRcx);
    emit_reload_low();
    emit_leave();
  };

  // The guest's arithmetic flags (in RAX's low 16 bits) into the host's,
  // without POPFQ (microcoded, some 20 cycles): SAHF takes SF ZF AF PF CF
  // from AH, and OF (bit 11, bit 3 of the second byte) is set by an 8-bit
  // ADD that overflows exactly when it is. TF, DF, AC stay the host's.
  auto emit_flags_from_rax = [&] {
    e.bytes({0x86, 0xc4});        // xchg ah, al: AH = SF ZF AF PF CF, AL bit 3 = OF
    e.bytes({0xc0, 0xe0, 0x04});  // shl al, 4: OF in bit 7
    e.bytes({0x04, 0x80});        // add al, 0x80: overflows iff bit 7 is set
    e.byte(0x9e);                 // sahf
  };
  // Restores the flags a check's PUSHFQ saved at [RSP] and drops the slot,
  // every register kept: CF alone (with BT) when `cf_only`.
  auto emit_restore_saved_flags = [&](bool cf_only = false) {
    if (cf_only) {
      e.bytes({0x48, 0x0f, 0xba, 0x24, 0x24, 0x00});  // bt qword [rsp], 0
      e.lea(kRsp, kRsp, kNoBase, 1, 8);
      return;
    }
    e.push(kRax);
    e.load(kRax, kRsp, 8);
    emit_flags_from_rax();
    e.pop(kRax);
    e.lea(kRsp, kRsp, kNoBase, 1, 8);
  };

  // The chain entry, from another translation's exit or a jump cache hit
  // (RIP already ours, the convention holding, the flags in their slot):
  // the instruction budget, an interrupt or event the LAPIC holds, a kick
  // and a new CodeMap epoch send it back to the run loop before anything
  // runs. After the generation check (below), the budget is taken and the
  // chain counted (one PADDQ, the budget's sign tested) and both given back
  // on the way out (PSUBQ of the same constant).
  const size_t chain_entry = e.size();
  // Self- and cross-modifying code: the block's code page written since it
  // was translated (its CodeMap generation moved). Chains and the jump
  // cache are not undone on every code write anywhere (the Linux boot
  // writes code pages hundreds of thousands of times); each chained entry
  // compares its own page's generation instead, and a mismatch goes back
  // to the run loop (which decodes the page again) and has the chains
  // undone there, so the exits that led here chain to the new translation.
  //
  // It comes first, so that an exit in the same page can jump past it
  // (`page_entry`): a translation runs only while its page's generation is
  // the one it was made under (the run loop's block, the jump cache's
  // entry and a chain from another page each check it), a chain is patched
  // only to a translation current then, and translated code never stores
  // into a code page (no write TLB entry maps one); so a same-page exit
  // leads from a current translation to one of the same generation. A
  // write by another vCPU or a device is seen at the next return to the
  // run loop, at most the chain budget later, or at this vCPU's next
  // serializing instruction (interpreted), which is what x86 asks of
  // cross-modifying code.
  std::vector<size_t> stale;
  if (const std::atomic<uint32_t>* word = cpu.code ? cpu.code->generation_word(block.phys) : nullptr) {
    if (absolute32(word)) {
      e.bytes({0x81, 0x3c, 0x25});  // cmp dword [disp32], imm32
      e.u32(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(word)));
    } else {
      e.push(kRax);
      e.mov_imm(kRax, reinterpret_cast<uint64_t>(word));
      e.bytes({0x81, 0x38});  // cmp dword [rax], imm32
    }
    e.u32(block.generation);
    if (!absolute32(word)) e.pop(kRax);
    stale.push_back(e.jcc32(0x5));  // jne
  }

  const size_t page_entry = e.size();
  std::vector<size_t> bail;
  emit_xmm15_constant(kPaddq, -static_cast<int64_t>(total), 1);
  e.bytes({0x66, 0x45, 0x0f, 0x38, 0x17, 0xfd});  // ptest xmm15, xmm13
  bail.push_back(e.jcc32(0x5));                   // jnz: the budget is negative
  // The leave word (hv/emu/leave_word.h): the LAPIC needs attention, a
  // kick, or a page became code on some vCPU (the CodeMap epoch moved: this
  // vCPU's write TLB entries made before may point straight at that page and
  // skip the code-page check, so a store through them would leave the other
  // vCPU's decoded copy stale for good; the run loop drops them). One compare
  // of a word at an absolute address, no register: the writers set it, and
  // the entry from the run loop clears it (Translator::enter). The window
  // left is the one block already past this check when the word is set (as
  // in the interpreter, which looks between blocks).
  const std::atomic<uint32_t>* leave = cpu.jit.leave;
  if (leave && absolute32(leave)) {
    e.bytes({0x83, 0x3c, 0x25});  // cmp dword [disp32], 0
    e.u32(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(leave)));
    e.byte(0);
    bail.push_back(e.jcc32(0x5));  // jne
  } else if (leave) {
    e.push(kRax);
    e.mov_imm(kRax, reinterpret_cast<uint64_t>(leave));
    e.bytes({0x83, 0x38, 0x00});   // cmp dword [rax], 0
    e.pop(kRax);                   // POP keeps the flags
    bail.push_back(e.jcc32(0x5));  // jne
  }
  // The body, entered here by the entry routine: the guest's registers are
  // the host's already; its flags go into the host's only when an
  // instruction reads them before writing them.
  const size_t body = e.size();
  if (cf_only_in) {
    // INC/DEC first: it writes every arithmetic flag but CF, which BT
    // takes from the slot (BT keeps ZF; OF SF AF PF it leaves undefined,
    // and INC/DEC writes them).
    e.bytes({0x48, 0x0f, 0xba, 0x64, 0x24, static_cast<uint8_t>(kSlotFlags), 0x00});  // bt qword [rsp + slot], 0
  } else if (flags_in) {
    // Only the guest's arithmetic flags enter the host's RFLAGS: TF, DF, AC
    // and the rest stay the host's.
    e.push(kRax);
    e.load(kRax, kRsp, 8 + kSlotFlags);
    emit_flags_from_rax();
    e.pop(kRax);
  }
  // The slow paths, emitted after the exits: a TLB miss, MMIO, a page
  // crossing or a non-canonical address leaves the translation before the
  // instruction, which the interpreter then runs (and faults exactly).
  // A soft-TLB check: where it starts (the refill's retry: S survives the
  // call), its tag misses (to the refill), and what the refill needs.
  // The address a check reads: [base + index*scale + disp], base and
  // index guest registers or S (base alone), either may be kNoBase.
  struct Address {
    unsigned base = kNoBase, index = kNoBase, scale = 1;
    int32_t disp = 0;
  };
  struct Check {
    size_t retry = 0;
    std::vector<size_t> tag_misses;
    Address a;
    unsigned t = 0;  // scratch: the refill computes the linear address there
    int32_t depth = 0;
    unsigned size = 0;
    bool write = false;
  };
  struct Miss {
    std::vector<size_t> jumps;
    unsigned index;  // the instruction's: the instructions completed before it
    uint64_t rip;    // ... and its RIP
    bool saved_flags;
    Scratch scratch;
    Check check;
  };
  std::vector<Miss> misses;
  // The start of a checked access: the host flags saved when they are the
  // guest's (the check's compares change them), the scratch registers'
  // guest values saved in the frame. Returns the stack depth the frame
  // slots are at.
  auto begin_access = [&](const Scratch& sc, bool save_flags) {
    int32_t depth = 0;
    if (save_flags) {
      e.bytes({0x9c});  // pushfq
      depth = 8;
    }
    for (auto [reg, slot] : {std::pair{sc.s, kSlotS}, {sc.t, kSlotT}, {sc.u, kSlotU}})
      if (used & (1u << reg) && !(reg == sc.s && sc.no_s)) e.store(kRsp, depth + slot, reg);
    return depth;
  };
  // The soft-TLB check of `size` bytes at `a` (by default S, the linear
  // address a LEA put there), through the TLB's mirror (tlb_mirror.h): a
  // hit leaves U = the addend plus a's base, so that [U + index*scale +
  // disp] is the host address (U itself for S); a miss jumps to the
  // refill. T = the entry's index (the linear address's page's low 8 bits),
  // U = the page of the last byte, which must equal the tag (so no page
  // crossing, canonical, and RAM: the tag of any other entry matches no
  // page). With the mirror in the low 2 GiB an entry is [T * 8 + constant];
  // else T becomes the entry's address, from the mirror's pointer in the Cpu.
  auto emit_check = [&](const Scratch& sc, int32_t depth, unsigned size, bool write, Check& check,
                        Address a = {}) {
    if (a.base == kNoBase && a.index == kNoBase) a.base = sc.s;
    check = Check{e.size(), {}, a, sc.t, depth, size, write};
    // T = the linear address (unless it is the base alone), then its page's low 8 bits.
    unsigned linear = a.base;
    if (a.index != kNoBase || a.disp != 0 || a.base == kNoBase) {
      e.lea(sc.t, a.base, a.index, a.scale, a.disp);
      linear = sc.t;
    }
    if (bmi2_) {
      // rorx T, linear, 12 (no flags)
      e.bytes({0xc4, static_cast<uint8_t>((sc.t < 8 ? 0x80 : 0) | 0x40 | (linear < 8 ? 0x20 : 0) | 0x03), 0xfb, 0xf0,
               static_cast<uint8_t>(0xc0 | ((sc.t & 7) << 3) | (linear & 7)), 12});
    } else {
      if (linear != sc.t) e.mov_rr(sc.t, linear);
      e.shr_imm(sc.t, 12);
    }
    // movzx T32, T8 (the REX makes 4..7 SPL..DIL)
    e.bytes({static_cast<uint8_t>(0x40 | (sc.t >= 8 ? 5 : 0)), 0x0f, 0xb6,
             static_cast<uint8_t>(0xc0 | ((sc.t & 7) << 3) | (sc.t & 7))});
    const size_t kind = (user ? 2 : 0) + (write ? 1 : 0);
    int32_t tags = static_cast<int32_t>(offsetof(TlbMirror, tag) + kind * kTlbSize * sizeof(uint64_t));
    int32_t addends = static_cast<int32_t>(offsetof(TlbMirror, addend) + kind * kTlbSize * sizeof(uint64_t));
    unsigned base = kNoBase, index = sc.t, scale = 8;
    if (absolute32(mirror + 1)) {
      tags += static_cast<int32_t>(reinterpret_cast<uintptr_t>(mirror));
      addends += static_cast<int32_t>(reinterpret_cast<uintptr_t>(mirror));
    } else {
      e.load(sc.u, kRsp, depth + kSlotCpu);
      e.load(sc.u, sc.u, static_cast<int32_t>(offsetof(Cpu, tlb) + offsetof(Tlb, mirror)));
      e.lea(sc.t, sc.u, sc.t, 8, 0);
      base = sc.t, index = kNoBase, scale = 1;
    }
    // U = the page of the last byte.
    const int32_t last = a.disp + static_cast<int32_t>(size - 1);
    if (last != 0 || a.index != kNoBase || a.base == kNoBase) {
      e.lea(sc.u, a.base, a.index, a.scale, last);
    } else {
      e.mov_rr(sc.u, a.base);
    }
    e.shr_imm(sc.u, 12);
    e.cmp_indexed(sc.u, base, index, scale, tags);
    check.tag_misses.push_back(e.jcc32(0x5));  // jne: the refill, then maybe the miss
    // U = the addend, plus the base: [U + index*scale + disp] is the host address.
    e.load_indexed(sc.u, base, index, scale, addends);
    if (a.base != kNoBase) e.add_rr(sc.u, a.base);
  };
  // The out-of-line refill of a check's tag miss: the shared routine walks
  // the page tables and fills the soft TLB (RAM only, no fault: the walk's
  // A/D bits are what the instruction's own access sets); on success the
  // check runs again, else this falls through to the miss code after it.
  auto emit_refill = [&](const Check& check, bool keep_low_xmm = false) {
    for (size_t at : check.tag_misses) e.patch_rel32(at, e.size());
    e.push_mem(kRsp, check.depth + kSlotCpu);  // the Cpu
    const Address& a = check.a;
    if (a.index != kNoBase || a.disp != 0 || a.base == kNoBase) {
      e.lea(check.t, a.base, a.index, a.scale, a.disp);  // T is the check's to clobber
      e.push(check.t);
    } else {
      e.push(a.base);
    }
    e.byte(0x68);  // push imm32: size | write << 8
    e.u32(check.size | (check.write ? 0x100u : 0u));
    e.byte(0xe8);  // call rel32: the refill routine, patched once placed
    (keep_low_xmm ? refill_keep_xmm_calls : refill_calls).push_back(e.size());
    e.u32(0);
    e.lea(kRsp, kRsp, kNoBase, 1, 24);
    e.patch_rel32(e.jcc32(0x5), check.retry);  // jnz: filled, check again
  };
  // S = the guest's RSP + `delta`.
  auto load_guest_rsp = [&](const Scratch& sc, int32_t depth, int32_t delta) {
    e.load(sc.s, kRsp, depth + kSlotCpu);
    e.load(sc.s, sc.s, gpr_offset(kRsp));
    if (delta) e.lea(sc.s, sc.s, kNoBase, 1, delta);
  };
  // The guest's RSP = S + `delta` (with LEA: the flags stay as they are).
  auto store_guest_rsp = [&](const Scratch& sc, int32_t depth, int32_t delta) {
    if (delta) e.lea(sc.s, sc.s, kNoBase, 1, delta);
    e.load(sc.t, kRsp, depth + kSlotCpu);
    e.store(sc.t, gpr_offset(kRsp), sc.s);
  };
  // The end of a checked access: the scratch registers' guest values back,
  // and the flags (dropped without touching the host's when nothing reads them).
  auto end_access = [&](const Scratch& sc, int32_t depth, bool flags_needed, bool cf_only) {
    for (auto [reg, slot] : {std::pair{sc.s, kSlotS}, {sc.t, kSlotT}, {sc.u, kSlotU}})
      if (used & (1u << reg) && !(reg == sc.s && sc.no_s)) e.load(reg, kRsp, depth + slot);
    if (depth) {
      if (flags_needed) {
        emit_restore_saved_flags(cf_only);
      } else {
        e.lea(kRsp, kRsp, kNoBase, 1, 8);
      }
    }
  };
  // MOV qword [U], reg / MOV reg, qword [U]: U is a low register other than
  // RSP and RBP, so ModRM mod=00 names it alone.
  auto mov_to_u = [&](unsigned u, unsigned reg) {
    e.bytes({static_cast<uint8_t>(0x48 | (reg >= 8 ? 4 : 0)), 0x89});
    e.byte(static_cast<uint8_t>(((reg & 7) << 3) | (u & 7)));
  };
  auto mov_from_u = [&](unsigned reg, unsigned u) {
    e.bytes({static_cast<uint8_t>(0x48 | (reg >= 8 ? 4 : 0)), 0x8b});
    e.byte(static_cast<uint8_t>(((reg & 7) << 3) | (u & 7)));
  };
  // MOV qword [U], v: one 64-bit store (two 32-bit halves would make the
  // RET or POP that loads it wait for both to leave the store buffer: no
  // store forwarding from two stores to one load). `spare` takes a value
  // that is no sign-extended imm32.
  auto mov_imm_to_u = [&](unsigned u, uint64_t v, unsigned spare) {
    if (static_cast<int64_t>(v) == static_cast<int32_t>(v)) {
      e.bytes({0x48, 0xc7, static_cast<uint8_t>(u & 7)});  // mov qword [U], simm32
      e.u32(static_cast<uint32_t>(v));
      return;
    }
    e.mov_imm(spare, v);
    mov_to_u(u, spare);
  };
  // S = the linear address of the instruction's memory operand (T borrowed).
  auto emit_linear_address = [&](const Insn& insn, uint64_t insn_rip, const Scratch& sc, int32_t depth) {
    const MemRef& m = insn.mem;
    unsigned base = m.base;
    int64_t disp = m.disp;
    if (m.base == kRsp) {
      load_guest_rsp(sc, depth, 0);
      base = sc.s;
    } else if (m.base == kRipReg) {
      e.mov_imm(sc.s, insn_rip + insn.len + static_cast<uint64_t>(disp));
      base = sc.s;
      disp = 0;
    }
    e.lea(sc.s, base == kNoReg ? kNoBase : base, m.index == kNoReg ? kNoBase : m.index, m.scale,
          static_cast<int32_t>(disp));
    if (m.seg == kFs || m.seg == kGs) {
      e.load(sc.t, kRsp, depth + kSlotCpu);
      e.add_load(sc.s, sc.t,
                 static_cast<int32_t>(offsetof(Cpu, seg) + m.seg * sizeof(Segment) + offsetof(Segment, base)));
    }
  };
  for (unsigned i = 0; i < count; ++i) {
    const Step& st = steps[i];
    const Insn& insn = *st.insn;
    const uint64_t insn_rip = rip + (st.offset - start);
    if (insn.mnemonic == ZYDIS_MNEMONIC_NOP) continue;  // nothing to do
    if (st.stack) {
      // PUSH: the store at RSP - 8, then RSP moves; POP: the load at RSP,
      // then RSP moves, then the register is written (it is not RSP). A miss
      // leaves before either, RSP as it was.
      const Scratch sc = st.scratch;
      const bool push = insn.mnemonic == ZYDIS_MNEMONIC_PUSH || is_pushf(insn);
      Miss miss{{}, i, insn_rip, st.flags_valid_before, sc, {}};
      const int32_t depth = begin_access(sc, st.flags_valid_before);
      load_guest_rsp(sc, depth, push ? -8 : 0);
      emit_check(sc, depth, 8, push, miss.check);
      if (is_pushf(insn)) {
        // RSP first (T = the Cpu after it), then S free for the value; the
        // check saved the guest's arithmetic flags at [RSP] (PUSHFQ reads them).
        store_guest_rsp(sc, depth, 0);
        emit_pushf_value(e, sc.s, sc.t, CPU_FIELD(rflags), 0);
        e.store(sc.u, 0, sc.s);
        end_access(sc, depth, st.flags_needed, st.cf_only);
        misses.push_back(std::move(miss));
        continue;
      }
      if (!push) {
        mov_from_u(insn.op[0].reg, sc.u);
      } else if (insn.op[0].kind == OpKind::kImm) {
        mov_imm_to_u(sc.u, insn.imm, sc.t);
      } else {
        mov_to_u(sc.u, insn.op[0].reg);
      }
      store_guest_rsp(sc, depth, push ? 0 : 8);
      end_access(sc, depth, st.flags_needed, st.cf_only);
      misses.push_back(std::move(miss));
      continue;
    }
    if (st.divide) {
      // The checks (on the divisor after the soft-TLB check of a memory
      // one), then the divide; the flags the check saved come back after
      // it, as the interpreter keeps them. Any check failing leaves before
      // the instruction, like a TLB miss.
      const Scratch sc = st.scratch;
      Miss miss{{}, i, insn_rip, st.flags_valid_before, sc, {}};
      const int32_t depth = begin_access(sc, st.flags_valid_before);
      if (st.mem >= 0) {
        emit_linear_address(insn, insn_rip, sc, depth);
        emit_check(sc, depth, insn.op[0].size, false, miss.check);
        emit_divide_checks(e, insn, kNoBase, sc.u, sc.t, sc.s, miss.jumps);
      } else {
        emit_divide_checks(e, insn, insn.op[0].reg, kNoBase, sc.t, sc.s, miss.jumps);
      }
      // S and T (not named by the divide) come back after it, with U.
      if (st.mem >= 0) {
        emit_divide_by_copy(e, insn, sc.t);
      } else {
        e.bytes(std::span(page + st.offset, insn.len));
      }
      end_access(sc, depth, st.flags_needed, st.cf_only);
      misses.push_back(std::move(miss));
      continue;
    }
    if (st.string) {
      // The checks (DF, the range within a page), the destination's (and
      // source's) soft-TLB check, then the host's own instruction; a failure
      // leaves before it, RCX = 0 with REP skips it.
      const Scratch sc = st.scratch;
      Miss miss{{}, i, insn_rip, st.flags_valid_before, sc, {}};
      Miss source = miss;
      const int32_t depth = begin_access(sc, st.flags_valid_before);
      const StringLayout layout{depth + kSlotCpu, CPU_FIELD(rflags), CPU_FIELD(jit.string_scratch)};
      std::vector<size_t> nothing;
      emit_string_checks(e, insn, layout, sc.s, sc.t, miss.jumps, nothing);
      emit_string_destination(e, sc.s);
      emit_check(sc, depth, 1, true, miss.check);
      emit_string_keep_destination(e, layout, sc.u, sc.t);
      const bool movs = string_registers(insn) & (1u << kRsi);
      if (movs) {
        emit_string_source(e, sc.s);
        emit_check(sc, depth, 1, false, source.check);
      }
      emit_string_run(e, insn, page + st.offset, layout, sc.s, sc.t, sc.u);
      for (size_t at : nothing) e.patch_rel32(at, e.size());
      end_access(sc, depth, st.flags_needed, st.cf_only);
      misses.push_back(std::move(miss));
      if (movs) misses.push_back(std::move(source));
      continue;
    }
    if (is_cli_or_sti(insn)) {
      // IF in the Cpu (translate_flags.h); at CPL > 0 the interpreter's.
      const Scratch sc = st.scratch;
      Miss miss{{}, i, insn_rip, st.flags_valid_before, sc, {}};
      const int32_t depth = begin_access(sc, st.flags_valid_before);
      const InterruptFlagLayout layout{depth + kSlotCpu, CPU_FIELD(rflags), CPU_FIELD(cpl),
                                       CPU_FIELD(interrupt_shadow)};
      emit_cli_sti(e, insn, layout, sc.s, miss.jumps);
      end_access(sc, depth, st.flags_needed, st.cf_only);
      misses.push_back(std::move(miss));
      continue;
    }
    if (st.rsp) {
      // S = the Cpu, U = the guest's RSP; the instruction on U; RSP back
      // if it wrote it. MOVs only: the flags are the instruction's.
      const Scratch sc = st.scratch;
      for (auto [reg, slot] : {std::pair{sc.s, kSlotS}, {sc.u, kSlotU}})
        if (used & (1u << reg)) e.store(kRsp, slot, reg);
      e.load(sc.s, kRsp, kSlotCpu);
      e.load(sc.u, sc.s, gpr_offset(kRsp));
      e.bytes(st.rsp_form);
      if (writes_rsp(insn)) e.store(sc.s, gpr_offset(kRsp), sc.u);
      for (auto [reg, slot] : {std::pair{sc.s, kSlotS}, {sc.u, kSlotU}})
        if (used & (1u << reg)) e.load(reg, kRsp, slot);
      continue;
    }
    if (st.mem < 0) {
      e.bytes(std::span(page + st.offset, insn.len));  // as it is
      continue;
    }
    const Rewritten& rw = st.rewritten;
    const unsigned size = insn.op[st.mem].size;
    const bool write = writes_memory(insn, st.mem);
    // A [base + index*scale + disp] of guest registers (not RSP, no FS/GS
    // base) is checked as it is and the instruction keeps its form on U:
    // no S to borrow, no LEA into it. A LOCK'd one's alignment check wants
    // the linear address in S.
    const MemRef& m = insn.mem;
    Scratch sc = st.scratch;
    sc.no_s = m.base != kRipReg && m.base != kRsp && (m.base != kNoReg || m.index != kNoReg) && m.seg != kFs &&
              m.seg != kGs && !atomic_locked(insn) && m.disp + static_cast<int64_t>(size) <= INT32_MAX &&
              m.disp >= INT32_MIN;
    Miss miss{{}, i, insn_rip, st.flags_valid_before, sc, {}};
    const int32_t depth = begin_access(sc, st.flags_valid_before);
    Address a;
    if (sc.no_s) {
      a = {m.base == kNoReg ? kNoBase : m.base, m.index == kNoReg ? kNoBase : m.index, m.scale,
           static_cast<int32_t>(m.disp)};
    } else {
      emit_linear_address(insn, insn_rip, sc, depth);
    }
    emit_check(sc, depth, size, write, miss.check, a);
    if (atomic_locked(insn)) emit_alignment_check(e, sc.s, size, miss.jumps);
    if (used & (1u << sc.s) && !sc.no_s) e.load(sc.s, kRsp, depth + kSlotS);
    if (used & (1u << sc.t)) e.load(sc.t, kRsp, depth + kSlotT);
    if (depth) {
      if (st.flags_needed) {
        emit_restore_saved_flags(st.cf_only);
      } else {
        e.lea(kRsp, kRsp, kNoBase, 1, 8);  // dropped without touching the flags
      }
    }
    // The instruction itself, its memory operand now [U] or [U +
    // index*scale + disp] (U a low register other than RSP and RBP: no SIB
    // needed without an index, a displacement only when there is one).
    e.bytes(rw.head);
    const uint8_t reg = static_cast<uint8_t>((rw.modrm_reg & 7) << 3);
    const int32_t disp = a.disp;
    const uint8_t mod = !sc.no_s || disp == 0 ? 0x00 : disp == static_cast<int8_t>(disp) ? 0x40 : 0x80;
    if (sc.no_s && a.index != kNoBase) {
      e.byte(static_cast<uint8_t>(mod | reg | 4));
      e.byte(static_cast<uint8_t>((Emitter::scale_bits(a.scale) << 6) | ((a.index & 7) << 3) | (sc.u & 7)));
    } else {
      e.byte(static_cast<uint8_t>(mod | reg | (sc.u & 7)));
    }
    if (mod == 0x40) e.byte(static_cast<uint8_t>(disp));
    if (mod == 0x80) e.u32(static_cast<uint32_t>(disp));
    e.bytes(rw.tail);
    if (used & (1u << sc.u)) e.load(sc.u, kRsp, kSlotU);
    misses.push_back(std::move(miss));
  }
  const uint64_t end_rip = rip + (off - start);
  if (final == Final::kJcc) {
    emit_state_out(total, kDynamicRip, written);  // once for both (POP keeps the flags)
    const size_t to_taken = e.jcc32(block.insns.back().cc & 0xf);
    emit_exit(total, fallthrough, false);
    emit_exit_tail(taken, to_taken);
  } else if (final == Final::kJmp) {
    emit_exit(total, taken, written);
  } else if (final != Final::kNone) {
    // CALL, RET, JMP/CALL r/m: the flags go to their slot and the low
    // registers to the Cpu first (scratch for the branch's accesses, RAX
    // the Cpu); a soft-TLB miss, a non-canonical target or address takes
    // the state back to before the branch, where the interpreter runs it.
    const Insn& last = block.insns.back();
    std::vector<size_t> undo;
    std::vector<Check> checks(2);
    const Scratch sc{kRcx, kRdx, kRsi};  // S, T, U: RAX holds the Cpu
    emit_state_out(total, kDynamicRip, written);
    const bool call_in_page = final == Final::kCall && (taken >> 12) == (rip >> 12);
    emit_spill_low(!call_in_page);
    // A guest register's value into `dst` (RAX..RDI and RSP from the Cpu).
    auto guest_reg = [&](unsigned dst, unsigned reg) {
      if (reg == kRsp) {
        e.load(dst, kRax, gpr_offset(reg));
      } else if (spilled(reg)) {
        movq_from_xmm(dst, reg);
      } else {
        e.mov_rr(dst, reg);
      }
    };
    if (final == Final::kRet) {
      e.load(kRcx, kRax, gpr_offset(kRsp));
      emit_check(sc, 0, 8, false, checks[0]);
      mov_from_u(kRsi, kRsi);
    } else if (final == Final::kJmpIndirect || final == Final::kCallIndirect) {
      const Operand& o = last.op[0];
      if (o.kind == OpKind::kReg) {
        guest_reg(kRsi, o.reg);
      } else {
        const MemRef& m = last.mem;
        unsigned base = kNoBase, index = kNoBase;
        int64_t disp = m.disp;
        if (m.base == kRipReg) {
          e.mov_imm(kRcx, end_rip + last.len + static_cast<uint64_t>(disp));
          base = kRcx;
          disp = 0;
        } else if (m.base != kNoReg) {
          guest_reg(kRcx, m.base);
          base = kRcx;
        }
        if (m.index != kNoReg) {
          guest_reg(kRdx, m.index);
          index = kRdx;
        }
        e.lea(kRcx, base, index, m.scale, static_cast<int32_t>(disp));
        if (m.seg == kFs || m.seg == kGs)
          e.add_load(kRcx, kRax,
                     static_cast<int32_t>(offsetof(Cpu, seg) + m.seg * sizeof(Segment) + offsetof(Segment, base)));
        emit_check(sc, 0, 8, false, checks[0]);
        mov_from_u(kRsi, kRsi);
      }
    }
    const int32_t ret_delta = 8 + static_cast<int32_t>(final == Final::kRet && last.nops ? (last.imm & 0xffff) : 0);
    if (final == Final::kCallIndirect) {
      // The target (RSI) must be canonical, else #GP at the branch: before
      // the push. A RET's or JMP's is checked when it misses the jump cache.
      e.mov_imm(kRdx, 1ull << 47);
      e.add_rr(kRdx, kRsi);
      e.shr_imm(kRdx, 48);
      undo.push_back(e.jcc32(0x5));  // jnz: bits 63..47 not all equal
    }
    if (final == Final::kCall || final == Final::kCallIndirect) {
      // The return address at RSP - 8 (U = RDI: the target stays in RSI).
      e.load(kRcx, kRax, gpr_offset(kRsp));
      e.lea(kRcx, kRcx, kNoBase, 1, -8);
      emit_check({kRcx, kRdx, kRdi}, 0, 8, true, checks[1]);
      mov_imm_to_u(kRdi, fallthrough, kRdx);
      e.store(kRax, gpr_offset(kRsp), kRcx);
    } else if (final == Final::kRet) {
      e.lea(kRcx, kRcx, kNoBase, 1, ret_delta);
      e.store(kRax, gpr_offset(kRsp), kRcx);
    }
    if (call_in_page) {
      emit_reload_low(false);
      emit_exit_tail(taken);
    } else if (final == Final::kCall) {
      e.mov_imm(kRsi, taken);
      emit_jump_cache_lookup(nullptr, 0);
    } else if (final == Final::kCallIndirect) {
      emit_jump_cache_lookup(nullptr, 0);
    } else {
      emit_jump_cache_lookup(&undo, final == Final::kRet ? ret_delta : 0);
    }
    for (const Check& check : checks) {
      if (check.tag_misses.empty()) continue;
      emit_refill(check, true);
      e.byte(0xe9);  // jmp rel32: not filled
      undo.push_back(e.size());
      e.u32(0);
    }
    for (size_t at : undo) e.patch_rel32(at, e.size());
    e.add_mem_imm8(kRax, CPU_FIELD(jit.side_exits), 1);
    emit_reload_low(!call_in_page);
    emit_state_out(total - 1, end_rip, false);
    emit_leave();
  } else if (count && is_sti(*steps[count - 1].insn)) {
    // Back to the run loop, never chained: the instruction after STI runs
    // alone under its interrupt shadow there (translate_flags.h).
    emit_state_out(count, end_rip, written);
    emit_leave();
  } else {
    emit_exit(count, end_rip, written);
  }
  for (const Miss& miss : misses) {
    if (!miss.check.tag_misses.empty()) emit_refill(miss.check);
    for (size_t at : miss.jumps) e.patch_rel32(at, e.size());
    // The flags the check saved stay at [RSP] for the state out to store.
    const int32_t depth = miss.saved_flags ? 8 : 0;
    const Scratch& sc = miss.scratch;
    for (auto [reg, slot] : {std::pair{sc.s, kSlotS}, {sc.t, kSlotT}, {sc.u, kSlotU}})
      if (used & (1u << reg) && !(reg == sc.s && sc.no_s)) e.load(reg, kRsp, depth + slot);
    emit_state_out(miss.index, miss.rip, miss.saved_flags, miss.saved_flags);
    emit_count(CPU_FIELD(jit.side_exits));
    emit_leave();
  }
  // A chain entry that does not go on: the budget it took back, RIP the
  // block's, back to the run loop.
  if (!stale.empty()) {
    for (size_t at : stale) e.patch_rel32(at, e.size());
    e.push(kRax);
    e.load(kRax, kRsp, 8 + kSlotCpu);
    e.bytes({0xc6, 0x80});  // mov byte [rax + disp32], 1
    e.u32(static_cast<uint32_t>(CPU_FIELD(jit.stale_chain)));
    e.byte(1);
    e.pop(kRax);
    emit_rip_out(rip);  // nothing taken from the budget yet
    emit_leave();
  }
  for (size_t at : bail) e.patch_rel32(at, e.size());
  emit_xmm15_constant(kPsubq, -static_cast<int64_t>(total), 1);
  emit_rip_out(rip);
  emit_leave();

  // The constants, 16-byte aligned in the translation (which the code
  // cache aligns to 16 bytes): PADDQ's memory operand must be.
  static_assert(CodeCache::kAlign % 16 == 0);
  while (e.size() % 16) e.byte(0xcc);
  for (const auto& [value, sites] : constants) {
    for (size_t at : sites) e.patch_rel32(at, e.size());
    e.u64(static_cast<uint64_t>(value[0]));
    e.u64(static_cast<uint64_t>(value[1]));
  }
  const uint8_t* code = cache_->add(e.code());
  if (!code) {
    flush();
    cpu.jit.last_exit = nullptr;  // it pointed into the dropped code
    code = cache_->add(e.code());
    if (!code) return false;  // larger than the whole cache: never translated
  }
  for (size_t at : refill_calls) cache_->patch_rel32(code + at, refill_);
  for (size_t at : refill_keep_xmm_calls) cache_->patch_rel32(code + at, refill_keep_low_xmm_);
  for (size_t at : to_exit) cache_->patch_rel32(code + at, exit_);
  block.native = code + body;
  block.native_chain = code + chain_entry;
  block.native_page_entry = static_cast<uint8_t>(page_entry - chain_entry);
  block.native_generation = cache_->generation();
  block.native_insns = static_cast<uint16_t>(total);
  block.native_user = user;
  block.native_rip = rip;
  ++stats_.blocks_translated;
  stats_.code_bytes += e.size();
  stats_.translation_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count());
  return true;
}

void Translator::flush() {
  cache_->flush();
  install_runtime();
  ++stats_.cache_flushes;
  patched_.clear();
  std::fill(jump_cache_.begin(), jump_cache_.end(), JumpCacheEntry{});
}

void Translator::unchain_all() {
  for (const auto& [site, unchained] : patched_) cache_->patch_rel32(site, unchained);
  stats_.unchains += patched_.size();
  patched_.clear();
  // The jump cache leads to blocks' translations as chains do.
  std::fill(jump_cache_.begin(), jump_cache_.end(), JumpCacheEntry{});
}

unsigned Translator::enter(Cpu& cpu, Block& block, uint64_t chain_stamp, uint64_t budget) {
  // Translated at another RIP (an alias of the page: RIP-relative operands
  // and exits differ) or privilege (its TLB checks use the other entries):
  // interpreted.
  if (cpu.rip != block.native_rip || (cpu.cpl == 3) != block.native_user) {
    ++stats_.mismatched_entries;
    cpu.jit.last_exit = nullptr;
    return 0;
  }
  // A chain leads to a block's translation as it was: when a chained entry
  // found its code page written (or, without a CodeMap, a block may have
  // been freed or re-decoded), every chain goes, so the exits chain anew.
  if (chain_stamp != chain_stamp_ || cpu.jit.stale_chain) {
    unchain_all();
    chain_stamp_ = chain_stamp;
    cpu.jit.stale_chain = false;
  }
  // The last return went through a chainable exit to this very block (same
  // RIP, guest-physical page and CPL): from now on that exit jumps here,
  // past the page generation check (an exit is chainable only within its
  // page: see the chain entry).
  if (cpu.jit.last_exit && cpu.jit.last_exit_rip == cpu.rip &&
      cpu.jit.last_exit_page == ((block.phys & ~0xfffull) | (block.native_user ? 1 : 0))) {
    patched_.push_back({cpu.jit.last_exit, cache_->rel32_target(cpu.jit.last_exit)});
    cache_->patch_rel32(cpu.jit.last_exit, block.native_chain + block.native_page_entry);
    ++stats_.chains_made;
  }
  cpu.jit.last_exit = nullptr;
  // A RET missed the jump cache on its way here: the entry for this block
  // (its RIP, the guest-physical page the fetch TLB maps it to, which is
  // the block's, and the privilege), so the next such RET jumps straight in.
  if (cpu.jit.jump_missed) {
    cpu.jit.jump_missed = false;
    const TlbEntry& fetch =
        cpu.tlb.e[block.native_user][static_cast<unsigned>(Access::kExec)][(cpu.rip >> 12) & (kTlbSize - 1)];
    if (fetch.tag == cpu.rip >> 12 && fetch.phys == (block.phys & ~0xfffull)) {
      JumpCacheEntry& entry =
          jump_cache_[(block.native_user ? kJumpCacheSize : 0) + (((cpu.rip >> 12) ^ cpu.rip) & (kJumpCacheSize - 1))];
      entry = {cpu.rip, fetch.phys, block.native_chain, 0};
    }
  }
  cpu.jit.jump_cache = jump_cache_.data();
  // The leave word cleared, then what sets it looked at (after a full
  // fence: a writer sets its flag, then the word, so either the word is
  // set after this clear or the flag is seen here): chained entries leave
  // at once if any already holds. The block entered runs first either way.
  if (cpu.jit.leave) {
    cpu.jit.leave->store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if ((cpu.jit.attention && cpu.jit.attention->load(std::memory_order_acquire)) ||
        (cpu.jit.kick && cpu.jit.kick->load(std::memory_order_acquire)) ||
        (cpu.jit.code_epoch && cpu.jit.code_epoch->load(std::memory_order_acquire) != cpu.code_epoch_seen))
      cpu.jit.leave->store(1, std::memory_order_relaxed);
  }
  // Translated code keeps the flags explicit (flags.op == kNone).
  materialize_flags(cpu);
  cpu.jit.executed = 0;
  cpu.jit.chained = false;
  const uint64_t chains_before = cpu.jit.chains, side_exits_before = cpu.jit.side_exits;
  const uint64_t hits_before = cpu.jit.jump_hits, misses_before = cpu.jit.jump_misses;
  const uint64_t refills_before = cpu.jit.tlb_refills, refill_failures_before = cpu.jit.tlb_refill_failures;
  // The block entered takes its instructions from the budget first, as a
  // chain entry does; what did not run is given back, so the budget spent
  // is the instructions completed.
  const int64_t budget_in = static_cast<int64_t>(std::min<uint64_t>(budget, kChainBudget));
  cpu.jit.budget = budget_in - block.native_insns;
  reinterpret_cast<Entry>(const_cast<uint8_t*>(enter_))(&cpu, block.native);
  cpu.jit.executed = static_cast<uint64_t>(budget_in - cpu.jit.budget);
  cpu.jit.chained = cpu.jit.chains != chains_before;
  ++stats_.entries;
  stats_.chained_entries += cpu.jit.chains - chains_before;
  stats_.native_insns += cpu.jit.executed;
  stats_.side_exits += cpu.jit.side_exits - side_exits_before;
  stats_.jump_hits += cpu.jit.jump_hits - hits_before;
  stats_.jump_misses += cpu.jit.jump_misses - misses_before;
  stats_.tlb_refills += cpu.jit.tlb_refills - refills_before;
  stats_.tlb_refill_failures += cpu.jit.tlb_refill_failures - refill_failures_before;
  return static_cast<unsigned>(cpu.jit.executed);
}

std::string describe(const TranslatorStats& s) {
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  char line[1024];
  std::snprintf(line, sizeof(line),
                "jit: %llu blocks translated in %.3f ms (%llu bytes of host code), %llu instructions run natively, "
                "%llu entries from the run loop and %llu chained, %llu chains made and %llu undone, jump cache %llu "
                "hits and %llu misses, %llu soft-TLB refills (%llu not filled), %llu side exits to the interpreter, "
                "%llu entries at another RIP or CPL, %llu "
                "hot blocks not translatable, code "
                "cache %llu of %llu bytes (%llu flushes), metadata %llu bytes plus %llu per block (%llu blocks, "
                "at most %llu: %llu bytes)",
                u(s.blocks_translated), static_cast<double>(s.translation_ns) / 1e6, u(s.code_bytes), u(s.native_insns),
                u(s.entries), u(s.chained_entries), u(s.chains_made), u(s.unchains), u(s.jump_hits), u(s.jump_misses),
                u(s.tlb_refills), u(s.tlb_refill_failures), u(s.side_exits), u(s.mismatched_entries), u(s.fallbacks),
                u(s.cache_used), u(s.cache_capacity), u(s.cache_flushes), u(s.metadata_bytes), u(kBlockFieldBytes),
                u(s.blocks), u(s.blocks_peak), u(s.blocks_peak * kBlockFieldBytes));
  std::string out = line;
  if (!s.top_stops.empty()) {
    out += "; interpreted next most often:";
    for (const auto& [mnemonic, n] : s.top_stops)
      out += std::string(" ") + ZydisMnemonicGetString(static_cast<ZydisMnemonic>(mnemonic)) + " " + std::to_string(n);
  }
  return out;
}

TranslatorStats Translator::stats() const {
  TranslatorStats s = stats_;
  s.cache_used = cache_->used();
  s.cache_capacity = cache_->capacity();
  s.metadata_bytes = sizeof(*this) + sizeof(CodeCache) + jump_cache_.capacity() * sizeof(JumpCacheEntry) +
                     patched_.capacity() * sizeof(patched_[0]) + stops_.capacity() * sizeof(stops_[0]);
  for (size_t m = 0; m < stops_.size(); ++m)
    if (stops_[m]) s.top_stops.emplace_back(static_cast<uint16_t>(m), stops_[m]);
  std::sort(s.top_stops.begin(), s.top_stops.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (s.top_stops.size() > 16) s.top_stops.resize(16);
  return s;
}

}  // namespace hostvisor::emu::jit
