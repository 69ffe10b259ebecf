// DIV and IDIV in translated code. The host's divide must never raise #DE
// (the host would take a SIGFPE in the middle of translated code), so the
// translation tests first what would make the guest's fault, and leaves
// the translation before the instruction when it might, for the
// interpreter to run it and raise #DE exactly: a zero divisor, and for DIV
// a high half (RDX/EDX) not below the divisor (the quotient would not
// fit). IDIV runs natively only when its dividend is the sign extension
// of RAX/EAX (what CQO/CDQ leave, so the quotient always fits) and the
// divisor is not -1 (INT_MIN / -1); any other IDIV goes to the
// interpreter, which decides. Operand sizes 32 and 64 bits.
//
// The interpreter leaves the flags as they were (the SDM: undefined), and
// the translation keeps them so too: the caller saves the host's flags
// around the checks and the divide when they hold the guest's.
#pragma once

#include <cstddef>
#include <vector>

#include "hv/emu/decoder.h"
#include "hv/emu/jit/emitter.h"

namespace hostvisor::emu::jit {

bool is_divide(const Insn& insn);

// Whether the translator takes this DIV/IDIV: 32- or 64-bit, a general
// register (not RSP) or memory divisor.
bool divide_translatable(const Insn& insn);

// The tests before a divide: `divisor` is the register holding it, or
// kNoBase when it is in memory at [u] (u a low register other than RSP and
// RBP). `x` and `y` are free scratch registers (neither the divisor, RAX
// nor RDX). Each jump that leaves for the interpreter is added to `exits`
// (rel32 sites to patch). Changes the host's flags.
void emit_divide_checks(Emitter& e, const Insn& insn, unsigned divisor, unsigned u, unsigned x, unsigned y,
                        std::vector<size_t>& exits);

// The divide of a memory divisor, on the copy the checks loaded into `x`:
// never on memory again, where another vCPU may store a zero (or a
// smaller divisor) between the checks and the divide, and the host would
// raise #DE.
void emit_divide_by_copy(Emitter& e, const Insn& insn, unsigned x);

}  // namespace hostvisor::emu::jit
