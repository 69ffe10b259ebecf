// SMBIOS (DMTF DSP0134) tables describing the virtual machine: what
// `dmidecode`, installers and management agents read to learn the vendor,
// product, CPUs and memory. Firmware gets them through fw_cfg
// (etc/smbios/smbios-anchor and etc/smbios/smbios-tables) and installs them,
// patching the table address into the entry point.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "arch/x86_64/layout.h"

namespace hostvisor::smbios {

struct SystemDescription {
  unsigned cpu_count = 1;
  arch::MemoryLayout layout;
  std::array<uint8_t, 16> uuid{};
  uint32_t cpuid_1_eax = 0;  // processor signature (family, model, stepping)
  uint32_t cpuid_1_edx = 0;  // feature flags
  std::string bios_version = "hostvisor";
};

struct SmbiosTables {
  std::vector<uint8_t> anchor;  // the SMBIOS 2.8 entry point ("_SM_"), table address 0
  std::vector<uint8_t> tables;  // the structures, back to back, ending with type 127
};

// The entry point and tables as one block to copy to `address` (16-byte
// aligned, below 4 GiB): the entry point first, the tables after it, the
// table address filled in and both checksums redone, as firmware does when
// it installs them. Direct boot puts it in the F-segment, where guests
// without firmware look for it.
std::vector<uint8_t> place_smbios_tables(const SmbiosTables& tables, uint32_t address);

// The structures hostvisor gives every machine: types 0 (BIOS), 1 (system),
// 3 (chassis), 4 (one per CPU), 16 (memory array), 17 (one memory device),
// 19 (one mapped range per RAM region), 32 (boot status) and 127 (end).
SmbiosTables build_smbios_tables(const SystemDescription& system);

}  // namespace hostvisor::smbios
