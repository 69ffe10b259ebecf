#include "hv/emu/jit/translate_divide.h"

#include <Zydis/Zydis.h>

namespace hostvisor::emu::jit {
namespace {

constexpr unsigned kRax = 0, kRdx = 2, kRsp = 4;

// OP r/m, reg between registers, 32- or 64-bit (`w`).
void alu_rr(Emitter& e, bool w, uint8_t opcode, unsigned reg, unsigned rm) {
  const uint8_t rex = static_cast<uint8_t>(0x40 | (w ? 8 : 0) | (reg >= 8 ? 4 : 0) | (rm >= 8 ? 1 : 0));
  if (rex != 0x40) e.byte(rex);
  e.byte(opcode);
  e.byte(static_cast<uint8_t>(0xc0 | ((reg & 7) << 3) | (rm & 7)));
}

}  // namespace

void emit_divide_by_copy(Emitter& e, const Insn& insn, unsigned x) {
  alu_rr(e, insn.op[0].size == 8, 0xf7, insn.mnemonic == ZYDIS_MNEMONIC_DIV ? 6 : 7, x);  // div/idiv x
}

bool is_divide(const Insn& insn) { return insn.mnemonic == ZYDIS_MNEMONIC_DIV || insn.mnemonic == ZYDIS_MNEMONIC_IDIV; }

bool divide_translatable(const Insn& insn) {
  if (!is_divide(insn) || insn.nops != 1 || insn.prefixes != 0 || insn.ends_block) return false;
  const Operand& o = insn.op[0];
  if (o.size != 4 && o.size != 8) return false;
  if (o.kind == OpKind::kReg) return o.reg < 16 && o.reg != kRsp && !o.high8;
  return o.kind == OpKind::kMem;
}

void emit_divide_checks(Emitter& e, const Insn& insn, unsigned divisor, unsigned u, unsigned x, unsigned y,
                        std::vector<size_t>& exits) {
  const bool w = insn.op[0].size == 8;
  // X = the divisor (a 32-bit MOV zero-extends).
  if (divisor == kNoBase) {
    const uint8_t rex = static_cast<uint8_t>(0x40 | (w ? 8 : 0) | (x >= 8 ? 4 : 0));
    if (rex != 0x40) e.byte(rex);
    e.byte(0x8b);  // mov x, [u]
    e.byte(static_cast<uint8_t>(((x & 7) << 3) | (u & 7)));
  } else {
    alu_rr(e, w, 0x89, divisor, x);  // mov x, divisor
  }
  alu_rr(e, w, 0x85, x, x);       // test x, x
  exits.push_back(e.jcc32(0x4));  // jz: #DE
  if (insn.mnemonic == ZYDIS_MNEMONIC_DIV) {
    alu_rr(e, w, 0x39, x, kRdx);    // cmp rdx, x
    exits.push_back(e.jcc32(0x3));  // jae: the quotient does not fit
    return;
  }
  // IDIV: RDX must be RAX's sign, and the divisor not -1.
  alu_rr(e, w, 0x89, kRax, y);  // mov y, rax
  alu_rr(e, w, 0xc1, 7, y);     // sar y, 63 / 31
  e.byte(w ? 63 : 31);
  alu_rr(e, w, 0x39, kRdx, y);    // cmp y, rdx
  exits.push_back(e.jcc32(0x5));  // jne: a dividend wider than RAX
  alu_rr(e, w, 0x83, 7, x);       // cmp x, -1
  e.byte(0xff);
  exits.push_back(e.jcc32(0x4));  // je
}

}  // namespace hostvisor::emu::jit
