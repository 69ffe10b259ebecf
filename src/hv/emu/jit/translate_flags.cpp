#include "hv/emu/jit/translate_flags.h"

#include <Zydis/Zydis.h>

#include "hv/emu/cpu.h"

namespace hostvisor::emu::jit {

bool is_pushf(const Insn& insn) { return insn.mnemonic == ZYDIS_MNEMONIC_PUSHFQ; }

bool pushf_translatable(const Insn& insn) {
  return is_pushf(insn) && insn.opsize == 8 && insn.prefixes == 0 && !insn.ends_block;
}

void emit_pushf_value(Emitter& e, unsigned value, unsigned cpu, int32_t rflags_offset, int32_t flags_at) {
  constexpr uint64_t kKept = ~(kArithFlags | kFlagVm | kFlagRf);
  e.load(value, cpu, rflags_offset);
  e.and_imm(value, static_cast<int32_t>(static_cast<uint32_t>(kKept)));  // sign-extended: bits 63..32 stay
  e.load(cpu, 4, flags_at);                                              // the host's = the guest's arithmetic flags
  e.and_imm(cpu, static_cast<int32_t>(kArithFlags));
  e.add_rr(value, cpu);  // disjoint bits
}

bool is_cli_or_sti(const Insn& insn) {
  return (insn.mnemonic == ZYDIS_MNEMONIC_CLI || insn.mnemonic == ZYDIS_MNEMONIC_STI) && insn.prefixes == 0;
}

bool is_sti(const Insn& insn) { return insn.mnemonic == ZYDIS_MNEMONIC_STI; }

namespace {

// op byte/qword [s + disp32] with a ModRM reg field `ext`, REX as given.
void mem_op(Emitter& e, uint8_t rex, uint8_t opcode, unsigned ext, unsigned s, int32_t disp) {
  rex |= s >= 8 ? 1 : 0;
  if (rex) e.byte(rex);
  e.byte(opcode);
  e.byte(static_cast<uint8_t>(0x80 | (ext << 3) | (s & 7)));
  if ((s & 7) == 4) e.byte(0x24);
  e.u32(static_cast<uint32_t>(disp));
}

}  // namespace

void emit_cli_sti(Emitter& e, const Insn& insn, const InterruptFlagLayout& l, unsigned s, std::vector<size_t>& exits) {
  e.load(s, 4, l.cpu_slot);         // the Cpu
  mem_op(e, 0, 0x80, 7, s, l.cpl);  // cmp byte [s + cpl], 0
  e.byte(0);
  exits.push_back(e.jcc32(0x5));  // jne: CPL > 0, IOPL decides: the interpreter's
  if (!is_sti(insn)) {
    mem_op(e, 0x48, 0x81, 4, s, l.rflags);  // and qword [s + rflags], ~IF
    e.u32(static_cast<uint32_t>(~kFlagIf));
    return;
  }
  mem_op(e, 0, 0xf6, 0, s, l.rflags + 1);  // test byte [s + rflags + 1], IF >> 8
  e.byte(static_cast<uint8_t>(kFlagIf >> 8));
  const size_t already = e.jcc32(0x5);           // jnz: IF set already, no shadow
  mem_op(e, 0, 0xc6, 0, s, l.interrupt_shadow);  // mov byte [s + interrupt_shadow], 1
  e.byte(1);
  mem_op(e, 0x48, 0x81, 1, s, l.rflags);  // or qword [s + rflags], IF
  e.u32(static_cast<uint32_t>(kFlagIf));
  e.patch_rel32(already, e.size());
}

}  // namespace hostvisor::emu::jit
