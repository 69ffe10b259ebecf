// The guest-physical memory map of a hostvisor x86-64 machine, as named
// constants, plus the RAM regions for a given RAM size.
//
//   0x0000_0000  real-mode IVT + BIOS data area (left untouched)
//   0x0000_1000  boot structures written by the loaders (GDT, page tables,
//                PVH start_info, multiboot info, zero page, command line);
//                kernels may not load over them
//   0x0009_FC00  EBDA (1 KiB, reserved in e820; the MP table slot)
//   0x000A_0000  VGA window and option ROMs (RAM-backed, reserved in e820)
//   0x000E_0000  ACPI tables (RAM-backed, reserved in e820); their last
//                page, 0xEF000, holds the VM generation ID (VMGENID)
//   0x000F_0000  SMBIOS entry point and tables (RAM-backed, reserved in e820)
//   0x0010_0000  RAM: where kernels and initrds go, up to the 32-bit hole
//   0xB000_0000  32-bit hole: PCI ECAM (256 buses, reserved in e820),
//   0xC000_0000  the 32-bit PCI MMIO window for BARs (a gap in e820, so the
//                guest sees it as the place for PCI devices),
//   0xFEB0_0000  virtio-mmio devices, 4 KiB apart (described in the DSDT),
//   0xFEC0_0000  IOAPIC, LAPIC (0xFEE0_0000), up to 4 GiB (reserved in e820)
//   4 GiB        the rest of RAM
//
// Low RAM ends at 0xB000_0000 (2.75 GiB) rather than 3 GiB so the ECAM
// window sits below the 3 GiB-4 GiB PCI MMIO window instead of inside it.
// The legacy area 0xA0000-0xFFFFF is backed by RAM so ACPI tables and the MP
// table can be written there; e820 tells the guest it is not usable RAM.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace hostvisor::arch {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t kPageSize = 4096;

// Real mode leftovers a BIOS would own.
constexpr uint64_t kRealModeIvtStart = 0x0;
constexpr uint64_t kBiosDataAreaEnd = 0x500;
constexpr uint64_t kEbdaStart = 0x9fc00;
constexpr uint64_t kEbdaSize = 0x400;
constexpr uint64_t kLegacyAreaStart = 0xa0000;  // VGA window, ROMs, BIOS
constexpr uint64_t kLegacyAreaEnd = 0x100000;
constexpr uint64_t kHighMemoryStart = 0x100000;  // "upper memory" in multiboot terms

// Slots for firmware tables written by the machine builder (later issue).
constexpr uint64_t kMpTableStart = kEbdaStart;  // MP floating pointer + table, inside the EBDA
constexpr uint64_t kMpTableSize = kEbdaSize;
constexpr uint64_t kAcpiTablesStart = 0xe0000;  // RSDP is searched for in 0xE0000-0xFFFFF
constexpr uint64_t kAcpiTablesEnd = 0xf0000;
// The 16-byte VM generation ID, in the reserved ACPI area's last page (the
// tables end before it): memory the guest knows to leave alone.
constexpr uint64_t kVmGenerationIdAddress = kAcpiTablesEnd - kPageSize;
constexpr uint64_t kSmbiosStart = 0xf0000;  // the SMBIOS entry point is searched for in 0xF0000-0xFFFFF
constexpr uint64_t kSmbiosEnd = 0x100000;

// Boot structures, each at a fixed address, page aligned, all inside
// [kBootStructuresStart, kBootStructuresEnd).
constexpr uint64_t kBootStructuresStart = 0x1000;
constexpr uint64_t kBootGdtAddress = 0x1000;        // GDT (+ the boot TSS after it)
constexpr uint64_t kPvhStartInfoAddress = 0x2000;   // hvm_start_info, modlist, memmap
constexpr uint64_t kMultibootInfoAddress = 0x3000;  // multiboot_info, mmap, modules, strings
constexpr uint64_t kZeroPageAddress = 0x7000;       // Linux struct boot_params (4 KiB)
constexpr uint64_t kBootPml4Address = 0x9000;       // identity page tables for long mode:
constexpr uint64_t kBootPdptAddress = 0xa000;       //   PML4, PDPT,
constexpr uint64_t kBootPdAddress = 0xb000;         //   4 PDs of 2 MiB pages (0xB000-0xEFFF)
constexpr uint64_t kBootPdCount = 4;                //   mapping the first 4 GiB
constexpr uint64_t kCmdlineAddress = 0x20000;       // kernel command line, NUL-terminated
constexpr uint64_t kCmdlineMaxSize = 0x10000;       //   including the NUL
constexpr uint64_t kBootStructuresEnd = kCmdlineAddress + kCmdlineMaxSize;
constexpr uint64_t kIdentityMappedSize = kBootPdCount * kGiB;

// The 32-bit hole.
constexpr uint64_t kLowRamMaxEnd = 0xb0000000;  // RAM below the hole ends here at most
constexpr uint64_t kPciEcamStart = 0xb0000000;  // PCI Express ECAM: 256 buses x 1 MiB
constexpr uint64_t kPciEcamSize = 0x10000000;
constexpr uint64_t kPciMmio32Start = 0xc0000000;  // 32-bit PCI BAR window (3 GiB ...)
constexpr uint64_t kPciMmio32End = 0xfeb00000;
// virtio-mmio transports: slot i at kVirtioMmioStart + i * kVirtioMmioStride
// on GSI kVirtioMmioFirstGsi + i. The GSIs are the IOAPIC pins above the
// PCI INTx lines (16-19); an IOAPIC has 24, so there are four slots.
constexpr uint64_t kVirtioMmioStart = 0xfeb00000;
constexpr uint64_t kVirtioMmioStride = 0x1000;
constexpr uint32_t kVirtioMmioFirstGsi = 20;
constexpr uint32_t kVirtioMmioSlots = 4;
constexpr uint64_t kVirtioMmioEnd = 0xfec00000;  // the window's end (the IOAPIC)
constexpr uint64_t kIoApicAddress = 0xfec00000;
constexpr uint64_t kLapicAddress = 0xfee00000;
constexpr uint64_t kPlatformMmioStart = 0xfec00000;  // IOAPIC .. 4 GiB: chipset, reserved in e820
constexpr uint64_t kHighRamStart = 4 * kGiB;

// The PC's legacy I/O ports and ISA interrupt lines, where guests (and
// their firmware-less boot paths) expect them. The platform wiring in
// src/vmm/platform_devices.cpp places each device here; the ACPI tables
// describe the PM block at these ports.
constexpr uint16_t kI8042DataPort = 0x60;     // i8042 keyboard controller: data
constexpr uint16_t kPort61 = 0x61;            // system control port B (PIT channel 2 gate, speaker)
constexpr uint16_t kI8042CommandPort = 0x64;  // i8042: status (read) and command (write)
constexpr uint16_t kRtcPort = 0x70;           // CMOS RTC: index (0x70) and data (0x71)
constexpr uint16_t kRtcPortCount = 2;
constexpr uint16_t kPostCodePort = 0x80;   // POST diagnostic codes
constexpr uint16_t kDebugExitPort = 0xf4;  // --debug-exit: a write of v exits with (v << 1) | 1
constexpr uint16_t kDebugExitPortCount = 4;
constexpr uint16_t kFwCfgPort = 0x510;  // fw_cfg: selector (0x510), data (0x511), DMA address (0x514-0x51b)
constexpr uint16_t kFwCfgPortCount = 12;
constexpr uint16_t kFirmwareDebugPort = 0x402;  // QEMU's debug console: firmware's debug log (--firmware)
constexpr uint16_t kCom1Port = 0x3f8;  // 8250 UART, ttyS0
constexpr uint16_t kCom1PortCount = 8;
// The ACPI PM register block (fixed hardware, described in the FADT).
constexpr uint16_t kPmEventPort = 0x600;    // PM1a_EVT: status (2 bytes) + enable (2 bytes)
constexpr uint16_t kPmControlPort = 0x604;  // PM1a_CNT: SLP_TYP/SLP_EN
constexpr uint16_t kPmResetPort = 0x606;    // RESET_REG
constexpr uint16_t kPmTimerPort = 0x608;    // PM_TMR
constexpr uint16_t kPmGpe0Port = 0x610;     // GPE0_BLK: status (2) + enable (2)
constexpr uint8_t kVmGenerationIdGpe = 0;   // GPE0 bit whose _E00 notifies VMGENID

constexpr uint32_t kI8042KeyboardIrq = 1;
constexpr uint32_t kCom1Irq = 4;
constexpr uint32_t kRtcIrq = 8;
constexpr uint32_t kPmSciIrq = 9;  // ACPI SCI
constexpr uint32_t kI8042MouseIrq = 12;

// Sanity bounds on --memory: enough for the boot structures plus a kernel at
// 1 MiB; at most what 4-level paging and the address arithmetic comfortably cover.
constexpr uint64_t kMinRamSize = 2 * kMiB;
constexpr uint64_t kMaxRamSize = 1024 * kGiB;

struct MemoryLayout {
  uint64_t ram_size = 0;
  uint64_t low_ram_end = 0;    // RAM is [0, low_ram_end) ...
  uint64_t high_ram_size = 0;  // ... plus [4 GiB, 4 GiB + high_ram_size)

  // The GuestMemory regions for this layout (one or two).
  std::vector<MemoryRegionSpec> regions() const;
  uint64_t high_ram_end() const { return kHighRamStart + high_ram_size; }
};

// The layout for ram_size bytes of RAM (a multiple of 4 KiB, within
// [kMinRamSize, kMaxRamSize]).
Result<MemoryLayout> memory_layout(uint64_t ram_size);

}  // namespace hostvisor::arch
