// Zydis, the software CPU's instruction decoder, opened with dlopen() when
// the software CPU is first used rather than linked: a VMM on KVM never
// decodes an instruction, and the linked library (with Zycore) cost every
// VMM process about 0.2 MiB of resident memory for its mappings and the
// tables its relocations dirty (#13's footprint goal).
//
// zydis_library.cpp defines the Zydis entry points the emulator
// calls (ZydisDecoderInit, ZydisDecoderDecodeFull, ZydisRegisterGetClass)
// with the signatures of Zydis's headers; each forwards to the loaded
// library, so the decoder's code is the same as with a linked Zydis.
#pragma once

#include "base/result.h"

namespace hostvisor::emu {

// Loads the library (once per process; thread-safe) or says which library
// and Debian package are missing. The emulator's entry points load it
// themselves on first use too; create_emu_hypervisor() calls this first so
// that a missing library is an error at start, not an abort mid-run.
Result<void> load_zydis();

}  // namespace hostvisor::emu
