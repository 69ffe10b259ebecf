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

}  // namespace hostvisor::emu::jit
