#include "hv/emu/jit/translate_atomic.h"

#include <Zydis/Zydis.h>

namespace hostvisor::emu::jit {
namespace {

constexpr unsigned kRsp = 4;

bool plain_register(const Operand& o) { return o.kind == OpKind::kReg && o.reg < 16 && (o.reg != kRsp || o.high8); }

}  // namespace

bool is_atomic_rmw(const Insn& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_CMPXCHG:
    case ZYDIS_MNEMONIC_XADD: return true;
    case ZYDIS_MNEMONIC_XCHG:
      return insn.nops == 2 && (insn.op[0].kind == OpKind::kMem || insn.op[1].kind == OpKind::kMem);
    default: return false;
  }
}

bool atomic_translatable(const Insn& insn) {
  if (!is_atomic_rmw(insn)) return false;
  if (insn.nops != 2 || insn.ends_block || (insn.prefixes & (kPrefixRep | kPrefixRepne))) return false;
  const Operand& dst = insn.op[0];
  const Operand& src = insn.op[1];
  if (!plain_register(src)) return false;
  if (dst.kind == OpKind::kMem) return true;
  return !(insn.prefixes & kPrefixLock) && plain_register(dst);
}

bool atomic_locked(const Insn& insn) {
  return (insn.prefixes & kPrefixLock) || (insn.mnemonic == ZYDIS_MNEMONIC_XCHG && insn.op[0].kind == OpKind::kMem);
}

uint16_t atomic_implicit_registers(const Insn& insn) { return insn.mnemonic == ZYDIS_MNEMONIC_CMPXCHG ? 0x1 : 0; }

void emit_alignment_check(Emitter& e, unsigned s, unsigned size, std::vector<size_t>& exits) {
  if (size <= 1) return;
  // test s8, size - 1 (the low byte: REX for SIL/DIL and R8B..R15B)
  if (s >= 4) e.byte(static_cast<uint8_t>(0x40 | (s >= 8 ? 1 : 0)));
  e.byte(0xf6);
  e.byte(static_cast<uint8_t>(0xc0 | (s & 7)));
  e.byte(static_cast<uint8_t>(size - 1));
  exits.push_back(e.jcc32(0x5));  // jnz: misaligned, the interpreter's
}

}  // namespace hostvisor::emu::jit
