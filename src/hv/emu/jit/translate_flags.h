// PUSHFQ in translated code: a 64-bit PUSH of the guest's RFLAGS, the
// arithmetic flags from the host's (saved by the soft-TLB check's PUSHFQ)
// and the rest (IF, DF, AC, IOPL, ...) from Cpu::rflags, VM and RF clear
// as the interpreter pushes them. POPFQ is not translated: it may change
// IF, TF, DF, AC or IOPL, and one that sets IF opens an interrupt window
// right after it; the interpreter runs it.
//
// CLI and STI (both end their block, as in the interpreter) at CPL 0: a
// clear or set of Cpu::rflags.IF. At another CPL (IOPL decides: #GP or
// not) the translation leaves before the instruction for the interpreter.
// STI on a clear IF opens the one-instruction interrupt shadow
// (Cpu::interrupt_shadow), and a translation ending in STI always returns
// to the run loop, never chained, so the instruction after it runs alone
// and the events it held back are taken right after that one, exactly
// where the interpreter takes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "hv/emu/decoder.h"
#include "hv/emu/jit/emitter.h"

namespace hostvisor::emu::jit {

bool is_pushf(const Insn& insn);

// PUSHFQ of 64-bit operand size, no prefix.
bool pushf_translatable(const Insn& insn);

// `value` = the RFLAGS PUSHFQ pushes: (cpu->rflags & ~(arith | VM | RF)) |
// (the saved host flags at [RSP + flags_at] & arith). `cpu` holds the Cpu
// pointer and is overwritten; `rflags_offset` is offsetof(Cpu, rflags).
void emit_pushf_value(Emitter& e, unsigned value, unsigned cpu, int32_t rflags_offset, int32_t flags_at);

bool is_cli_or_sti(const Insn& insn);
bool is_sti(const Insn& insn);

// Where the emitted code finds the Cpu (its pointer at [RSP + cpu_slot])
// and its fields.
struct InterruptFlagLayout {
  int32_t cpu_slot;
  int32_t rflags;            // offsetof(Cpu, rflags)
  int32_t cpl;               // offsetof(Cpu, cpl)
  int32_t interrupt_shadow;  // offsetof(Cpu, interrupt_shadow)
};

// CLI / STI on the Cpu (`s` a scratch register); at a CPL other than 0 it
// jumps out (a rel32 site added to `exits`). Changes the host's flags.
void emit_cli_sti(Emitter& e, const Insn& insn, const InterruptFlagLayout& l, unsigned s, std::vector<size_t>& exits);

}  // namespace hostvisor::emu::jit
