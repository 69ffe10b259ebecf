// The "leave now" word of a vCPU's translated code: one 32-bit word that
// every chained block entry compares with 0 (jit/translator.cpp), set by
// whatever must make the vCPU return to its run loop soon: the LAPIC when it
// needs attention (an interrupt, INIT, SIPI, NMI), a kick, and the CodeMap
// when a page becomes code (the epoch moves). Translator::enter() clears it
// and sets it again if any of those already holds, so a set made before the
// clear is never lost (the writer sets its own flag first, then the word;
// enter() clears the word, fences, then looks at the flags).
//
// The words live in a pool mapped once in the low 2 GiB of the address
// space (MAP_32BIT) and never unmapped, so translated code names a word as
// an absolute 32-bit address (`cmp dword [disp32], 0`: no register) and a
// writer holding an old pointer never writes freed memory: a word released
// and handed to another vCPU only makes that vCPU leave once more than it
// needed to. Each word has a cache line of its own. When the pool cannot be
// mapped low or is used up, a word comes from the heap (never freed either)
// and the translator names it through a register.
#pragma once

#include <atomic>
#include <cstdint>

namespace hostvisor::emu {

std::atomic<uint32_t>* acquire_leave_word();
void release_leave_word(std::atomic<uint32_t>* word);

// Whether translated code can name `p` as a sign-extended 32-bit absolute address.
inline bool absolute32(const void* p) { return reinterpret_cast<uintptr_t>(p) < 0x80000000ull; }

}  // namespace hostvisor::emu
