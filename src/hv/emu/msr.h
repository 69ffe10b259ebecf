// Model-specific registers, the TSC and CR8 as the software CPU implements
// them (the local APIC's MSRs go to the platform's LocalApic).
#pragma once

#include <cstdint>
#include <optional>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

// nullopt / false: the guest gets #GP(0).
std::optional<uint64_t> read_msr(Cpu& cpu, uint32_t index);
bool write_msr(Cpu& cpu, uint32_t index, uint64_t value);

// The guest's TSC: the platform clock at the advertised rate plus the guest's offset.
uint64_t guest_tsc(const Cpu& cpu);

uint64_t cpu_cr8(const Cpu& cpu);
void set_cpu_cr8(Cpu& cpu, uint64_t value);

// IA32_ARCH_CAPABILITIES: the software CPU has none of the speculative-execution leaks.
constexpr uint64_t kArchCapabilities = (1ull << 0)      // RDCL_NO
                                       | (1ull << 1)    // IBRS_ALL
                                       | (1ull << 3)    // SKIP_L1DFL_VMENTRY
                                       | (1ull << 4)    // SSB_NO
                                       | (1ull << 5)    // MDS_NO
                                       | (1ull << 6)    // IF_PSCHANGE_MC_NO
                                       | (1ull << 8)    // TAA_NO
                                       | (1ull << 13)   // SBDR_SSDP_NO
                                       | (1ull << 14)   // FBSDP_NO
                                       | (1ull << 15)   // PSDP_NO
                                       | (1ull << 24)   // PBRSB_NO
                                       | (1ull << 26)   // GDS_NO
                                       | (1ull << 27);  // RFDS_NO

}  // namespace hostvisor::emu
