// Port I/O permission: IOPL, and the TSS I/O bitmap when CPL > IOPL.
#pragma once

#include <cstdint>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

// Raises #GP(0) when the current privilege may not access `size` ports at `port`.
void check_io_permission(Cpu& cpu, uint16_t port, unsigned size);

}  // namespace hostvisor::emu
