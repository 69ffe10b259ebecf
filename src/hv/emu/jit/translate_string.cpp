#include "hv/emu/jit/translate_string.h"

#include <Zydis/Zydis.h>

#include "hv/emu/cpu.h"

namespace hostvisor::emu::jit {
namespace {

constexpr unsigned kRax = 0, kRcx = 1, kRsi = 6, kRdi = 7;

bool is_movs(const Insn& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_MOVSB:
    case ZYDIS_MNEMONIC_MOVSW:
    case ZYDIS_MNEMONIC_MOVSD:
    case ZYDIS_MNEMONIC_MOVSQ: return true;
    default: return false;
  }
}

bool is_stos(const Insn& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_STOSB:
    case ZYDIS_MNEMONIC_STOSW:
    case ZYDIS_MNEMONIC_STOSD:
    case ZYDIS_MNEMONIC_STOSQ: return true;
    default: return false;
  }
}

bool rep(const Insn& insn) { return insn.prefixes & kPrefixRep; }

uint8_t scale_of(unsigned size) { return static_cast<uint8_t>(size); }

// REX.W prefixed register-register op (64-bit): `opcode reg, rm` with ModRM mod=11.
void rr(Emitter& e, uint8_t opcode, unsigned reg, unsigned rm) {
  e.byte(static_cast<uint8_t>(0x48 | (reg >= 8 ? 4 : 0) | (rm >= 8 ? 1 : 0)));
  e.byte(opcode);
  e.byte(static_cast<uint8_t>(0xc0 | ((reg & 7) << 3) | (rm & 7)));
}

// Jumps out unless [first, first + bytes) is within one page: T = first +
// bytes - 1 (bytes = RCX * size with REP, else size), T ^= first, T >>= 12.
void same_page(Emitter& e, const Insn& insn, unsigned first, unsigned t, std::vector<size_t>& exits) {
  const unsigned size = insn.opsize;
  if (rep(insn)) {
    e.lea(t, first, kRcx, scale_of(size), -1);
  } else {
    e.lea(t, first, kNoBase, 1, static_cast<int32_t>(size - 1));
  }
  rr(e, 0x31, first, t);  // xor t, first
  e.shr_imm(t, 12);
  exits.push_back(e.jcc32(0x5));  // jnz: crosses a page
}

}  // namespace

bool is_string_move_or_store(const Insn& insn) { return is_movs(insn) || is_stos(insn); }

bool string_translatable(const Insn& insn) {
  if (!is_string_move_or_store(insn)) return false;
  // MOVSD is also SSE's (F2 0F 10): the string forms are the ones that end a block.
  if (!insn.ends_block) return false;
  if (insn.addrsize != 8 || (insn.prefixes & ~kPrefixRep) != 0) return false;
  const unsigned size = insn.opsize;
  return size == 1 || size == 2 || size == 4 || size == 8;
}

uint16_t string_registers(const Insn& insn) {
  uint16_t r = 1u << kRdi;
  if (is_movs(insn)) r |= 1u << kRsi;
  if (is_stos(insn)) r |= 1u << kRax;
  if (rep(insn)) r |= 1u << kRcx;
  return r;
}

void emit_string_checks(Emitter& e, const Insn& insn, const StringLayout& l, unsigned s, unsigned t,
                        std::vector<size_t>& exits, std::vector<size_t>& nothing) {
  // DF (RFLAGS bit 10: bit 2 of its second byte) set: backwards, the interpreter's.
  e.load(s, 4, l.cpu_slot);                               // the Cpu
  e.byte(static_cast<uint8_t>(0x40 | (s >= 8 ? 1 : 0)));  // test byte [s + disp32], 4
  e.byte(0xf6);
  e.byte(static_cast<uint8_t>(0x80 | (s & 7)));
  if ((s & 7) == 4) e.byte(0x24);
  e.u32(static_cast<uint32_t>(l.rflags + 1));
  e.byte(0x04);
  exits.push_back(e.jcc32(0x5));  // jnz
  if (rep(insn)) {
    rr(e, 0x85, kRcx, kRcx);          // test rcx, rcx
    nothing.push_back(e.jcc32(0x4));  // jz: no iteration
    e.bytes({0x48, 0x81, 0xf9});      // cmp rcx, imm32: at most a page of bytes
    e.u32(4096 / insn.opsize);
    exits.push_back(e.jcc32(0x7));  // ja
  }
  same_page(e, insn, kRdi, t, exits);
  if (is_movs(insn)) same_page(e, insn, kRsi, t, exits);
}

void emit_string_destination(Emitter& e, unsigned s) { e.mov_rr(s, kRdi); }
void emit_string_source(Emitter& e, unsigned s) { e.mov_rr(s, kRsi); }

void emit_string_keep_destination(Emitter& e, const StringLayout& l, unsigned u, unsigned t) {
  e.load(t, 4, l.cpu_slot);
  e.store(t, l.scratch, u);
}

void emit_string_run(Emitter& e, const Insn& insn, const uint8_t* bytes, const StringLayout& l, unsigned s, unsigned t,
                     unsigned u) {
  const unsigned size = insn.opsize;
  const bool movs = is_movs(insn);
  e.load(t, 4, l.cpu_slot);
  // RDI and RSI after it: + RCX * size with REP, else + size.
  for (unsigned r : {kRdi, kRsi}) {
    if (r == kRsi && !movs) continue;
    if (rep(insn)) {
      e.lea(s, r, kRcx, scale_of(size), 0);
    } else {
      e.lea(s, r, kNoBase, 1, static_cast<int32_t>(size));
    }
    e.store(t, l.scratch + (r == kRdi ? 8 : 16), s);
  }
  if (movs) e.mov_rr(kRsi, u);
  e.load(kRdi, t, l.scratch);
  e.bytes(std::span(bytes, insn.len));  // the guest's REP MOVS/STOS, on the host addresses
  e.load(kRdi, t, l.scratch + 8);
  if (movs) e.load(kRsi, t, l.scratch + 16);
}

}  // namespace hostvisor::emu::jit
