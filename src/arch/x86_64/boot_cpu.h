// The boot vCPU's starting state for the two modes the loaders hand over in:
// 64-bit long mode with identity paging (Linux 64-bit boot protocol, direct
// ELF64 boot) and 32-bit flat protected mode without paging (PVH, multiboot).
// The GDT and page tables are written to guest memory at fixed addresses
// (layout.h) so the descriptor caches always match what the guest would load.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "hv/cpu_state.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

// Boot GDT selectors. 0x10/0x18 are what Linux calls __BOOT_CS/__BOOT_DS.
constexpr uint16_t kBootCode32Selector = 0x08;
constexpr uint16_t kBootCode64Selector = 0x10;
constexpr uint16_t kBootDataSelector = 0x18;
constexpr uint16_t kBootTssSelector = 0x20;  // 16-byte system descriptor (two slots)
constexpr uint16_t kBootGdtLimit = 6 * 8 - 1;

// Page-table entry bits used for the identity map.
constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWritable = 1ull << 1;
constexpr uint64_t kPteLargePage = 1ull << 7;

struct BootCpuState {
  Registers regs;
  SystemRegisters sregs;
};

// Writes the boot GDT (null, flat 32-bit code, flat 64-bit code, flat data,
// TSS) at kBootGdtAddress.
Result<void> write_boot_gdt(GuestMemory& memory);

// Writes PML4/PDPT/PDs identity-mapping [0, kIdentityMappedSize) with 2 MiB
// pages (1 GiB pages would need a CPUID feature the guest may lack).
Result<void> write_identity_page_tables(GuestMemory& memory);

// Long mode, CS = 64-bit code 0x10, data segments 0x18, CR3 = the identity
// map, interrupts off. Needs write_boot_gdt and write_identity_page_tables.
BootCpuState long_mode_boot_state(uint64_t entry);

// Flat 32-bit protected mode, paging off, CS = 0x08, data segments 0x18,
// interrupts off. Needs write_boot_gdt.
BootCpuState protected_mode_boot_state(uint32_t entry);

}  // namespace hostvisor::arch
