// PUSHFQ in translated code: a 64-bit PUSH of the guest's RFLAGS, the
// arithmetic flags from the host's (saved by the soft-TLB check's PUSHFQ)
// and the rest (IF, DF, AC, IOPL, ...) from Cpu::rflags, VM and RF clear
// as the interpreter pushes them. POPFQ is not translated: it may change
// IF, TF, DF, AC or IOPL, and one that sets IF opens an interrupt window
// right after it; the interpreter runs it.
#pragma once

#include <cstdint>

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

}  // namespace hostvisor::emu::jit
