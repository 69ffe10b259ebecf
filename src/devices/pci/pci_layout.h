// Where the PCI host bridge puts things in the guest-physical and port
// address spaces. The machine's memory map (e820, ACPI MCFG/_CRS) must agree
// with these; they are the single source of truth for PCI.
#pragma once

#include <cstdint>

namespace hostvisor::pci {

// Legacy configuration mechanism #1 (CONFIG_ADDRESS at 0xCF8, CONFIG_DATA at
// 0xCFC-0xCFF). The device covers 0xCF8-0xCFF; 0xCF9 is the reset control
// register of Intel chipsets, which PciConfigIo also implements.
inline constexpr uint16_t kConfigIoBase = 0xcf8;
inline constexpr uint16_t kConfigIoSize = 8;

// The 32-bit PCI MMIO window for BARs, up to the virtio-mmio window at
// 0xFEB00000 below the IOAPIC (arch/x86_64/layout.h kPciMmio32Start/End;
// ACPI _CRS).
inline constexpr uint64_t kMmioHoleStart = 0xc0000000;
inline constexpr uint64_t kMmioHoleEnd = 0xfeb00000;  // exclusive

// ECAM (PCIe enhanced configuration access): 1 MiB per bus, 256 buses, just
// below the BAR window (arch/x86_64/layout.h kPciEcamStart; ACPI MCFG).
// PciBarAllocator::standard() never hands out addresses inside it, wherever
// it is placed.
inline constexpr uint64_t kEcamBase = 0xb0000000;
inline constexpr uint64_t kEcamSize = 0x10000000;  // 256 MiB
inline constexpr uint64_t kEcamBytesPerFunction = 4096;

// Port range handed out to I/O BARs (above the legacy ISA devices).
inline constexpr uint64_t kIoBarStart = 0xc000;
inline constexpr uint64_t kIoBarEnd = 0x10000;  // exclusive

// Legacy INTx routing: device `slot` pin INTA..INTD (1..4) drives IOAPIC input
// 16 + ((slot + pin - 1) % 4), the standard PCI swizzle on GSIs 16-19. The
// ACPI _PRT / MP table must describe the same mapping (level, active low).
inline constexpr uint32_t kIntxFirstGsi = 16;
inline constexpr uint32_t kIntxGsiCount = 4;

// The host bridge at 00:00.0 identifies as Intel's Q35 DRAM controller
// (8086:29c0), which guests know and which needs no driver.
inline constexpr uint16_t kHostBridgeVendor = 0x8086;
inline constexpr uint16_t kHostBridgeDevice = 0x29c0;
inline constexpr uint16_t kQemuSubsystemVendor = 0x1af4;  // Red Hat, Inc.
inline constexpr uint16_t kQemuSubsystemId = 0x1100;      // QEMU virtual machine

inline constexpr uint8_t kMaxSlots = 32;

}  // namespace hostvisor::pci
