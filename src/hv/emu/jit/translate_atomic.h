// CMPXCHG, XADD and XCHG with memory in translated code. With a LOCK prefix
// (XCHG with memory is locked without one) the access must stay atomic for
// the other vCPUs, which share the host's memory: an aligned access within
// one page of RAM (what the soft-TLB check already requires) runs as the
// host's own LOCK'd instruction on the host address. A misaligned one could
// cross a cache line, and the host may trap or throttle a split lock: the
// translation tests the address first and leaves before the instruction
// when it is not aligned, for the interpreter's atomic slow path. MMIO and
// a page crossing already miss the soft-TLB check. Without LOCK, CMPXCHG
// and XADD are ordinary read-modify-writes and are copied as they are.
// Register forms (no LOCK: it would be #UD) are copied as they are too.
#pragma once

#include <cstddef>
#include <vector>

#include "hv/emu/decoder.h"
#include "hv/emu/jit/emitter.h"

namespace hostvisor::emu::jit {

// CMPXCHG, XADD, or XCHG with a memory operand.
bool is_atomic_rmw(const Insn& insn);

// Whether the translator takes this one: a memory destination (its first
// operand: the write TLB's access) with a general register source, with or
// without LOCK; or, without LOCK, both operands general registers (not
// RSP). Any operand size.
bool atomic_translatable(const Insn& insn);

// Whether the host must run it LOCK'd (so aligned): LOCK, or XCHG with memory.
bool atomic_locked(const Insn& insn);

// The registers it reads besides its operands: CMPXCHG's RAX (as a mask).
uint16_t atomic_implicit_registers(const Insn& insn);

// The alignment test of a locked access of `size` bytes at the linear
// address in `s`: a misaligned address jumps out (the rel32 site is added
// to `exits`). Changes the host's flags.
void emit_alignment_check(Emitter& e, unsigned s, unsigned size, std::vector<size_t>& exits);

}  // namespace hostvisor::emu::jit
