// Runs one x87 instruction on the host FPU with the guest's x87 state
// loaded. The host is x86-64, so its FPU implements the architecture the
// guest expects bit for bit: the 80-bit formats, the precision and rounding
// control, masked responses, the unmasked responses (no pop, no store,
// biased results), C0-C3 and the transcendental approximations.
#pragma once

#include <cstdint>

#include "hv/emu/execute/x87_state.h"

namespace hostvisor::emu {

// Executes opcode byte `opcode` (0xD8-0xDF) with ModRM `modrm` on the host
// FPU loaded from `image`, and stores the resulting state back into it. A
// register form has modrm >= 0xC0; a memory form must use mod=00, rm=111
// ([RDI] in 64-bit code): `memory` is then the host buffer it addresses.
// `rflags` supplies the flags FCMOVcc reads and receives those FCOMI sets.
//
// The image must not hold a pending unmasked exception (ES=0): the host
// would take it as #MF. The instruction itself may raise one: it is left in
// the image (ES set) and never reaches the host, because the state is saved
// with the non-waiting FNSAVE right after it. The host's own x87 state is
// saved before and restored after.
void x87_host_execute(FsaveImage& image, uint8_t opcode, uint8_t modrm, void* memory, uint64_t& rflags);

// The MXCSR bits the guest may set (FXSAVE's MXCSR_MASK): those the host
// supports, since SSE floating point runs under the guest's MXCSR on the host
// (every current x86-64 CPU: 0xFFFF, DAZ included).
uint32_t mxcsr_writable_bits();

}  // namespace hostvisor::emu
