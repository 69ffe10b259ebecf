// CPUID of the software CPU: an x86-64 baseline (SSE2, no AVX/XSAVE),
// GenuineIntel, with the TSC/crystal rates of the emulated platform.
#pragma once

#include <cstdint>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

struct CpuidResult {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidResult cpuid(const Cpu& cpu, uint32_t leaf, uint32_t subleaf);

}  // namespace hostvisor::emu
