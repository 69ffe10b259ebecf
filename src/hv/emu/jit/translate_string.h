// MOVS and STOS (bytes to qwords, with or without REP) in translated code.
// The interpreter runs a REP string instruction in dispatches of at most
// 4096 iterations, each counted as one instruction, with RCX, RSI and RDI
// describing the work left between them (interrupts are taken there). The
// translation runs one whole dispatch, the same way, only when it is
// simple: DF clear (the host's DF is the ABI's 0), 64-bit addresses, no
// segment override, and every byte the instruction touches (all RCX
// iterations: RCX * size <= 4096, so one dispatch does them all and RCX
// ends at 0) within one page of RAM on each side, which the soft-TLB
// checks then find (the write TLB holds no code page: a string never
// stores into code from translated code). It then runs the host's own
// REP MOVS/STOS on the host addresses (sequential semantics, overlap
// included), RCX, RSI and RDI updated exactly, and counts one
// instruction, as the interpreter does. RCX = 0 with REP does nothing.
// Anything else (DF set, a range crossing a page, a miss, MMIO) leaves
// before the instruction for the interpreter, which runs it in dispatches
// and takes interrupts between them; so the count is always the
// interpreter's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "hv/emu/decoder.h"
#include "hv/emu/jit/emitter.h"

namespace hostvisor::emu::jit {

bool is_string_move_or_store(const Insn& insn);

// MOVS/STOS with no prefix but REP (F3), 64-bit addresses.
bool string_translatable(const Insn& insn);

// The registers it reads and writes: RDI, RSI (MOVS), RAX (STOS), RCX (REP).
uint16_t string_registers(const Insn& insn);

// Where the emitted code finds what it needs (offsets from the host RSP
// or in the Cpu).
struct StringLayout {
  int32_t cpu_slot;  // [RSP + cpu_slot]: the Cpu pointer
  int32_t rflags;    // offsetof(Cpu, rflags)
  int32_t scratch;   // offsetof(Cpu, jit.string_scratch)
};

// The tests before any access: DF clear, and with REP RCX small enough
// that every byte lies within one page, on each side (a failure jumps out:
// rel32 sites added to `exits`). With REP and RCX = 0 it jumps to
// `nothing` (a rel32 site the caller points past the instruction). `s`
// and `t` are scratch registers. Changes the host's flags.
void emit_string_checks(Emitter& e, const Insn& insn, const StringLayout& l, unsigned s, unsigned t,
                        std::vector<size_t>& exits, std::vector<size_t>& nothing);

// S = the linear address of the destination (RDI) / of the source (RSI),
// for a soft-TLB check of one byte (the range is within its page).
void emit_string_destination(Emitter& e, unsigned s);
void emit_string_source(Emitter& e, unsigned s);

// After the destination's check hit (U = its host address): kept in the Cpu.
void emit_string_keep_destination(Emitter& e, const StringLayout& l, unsigned u, unsigned t);

// After every check hit (for MOVS, U = the source's host address): the
// instruction itself (the guest's bytes) on the host addresses, then RDI
// and RSI as it leaves them. No exit after this point.
void emit_string_run(Emitter& e, const Insn& insn, const uint8_t* bytes, const StringLayout& l, unsigned s, unsigned t,
                     unsigned u);

}  // namespace hostvisor::emu::jit
