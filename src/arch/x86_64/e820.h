// The BIOS E820 memory map of a layout: what every boot protocol hands the
// guest (Linux zero page, PVH memmap, multiboot mmap) to say which physical
// ranges are usable RAM.
#pragma once

#include <cstdint>
#include <vector>

#include "arch/x86_64/layout.h"

namespace hostvisor::arch {

// ACPI 6 "Address Range Types"; the same numbers in all three protocols.
enum class E820Type : uint32_t {
  kRam = 1,
  kReserved = 2,
  kAcpi = 3,
  kNvs = 4,
};

struct E820Entry {
  uint64_t address = 0;
  uint64_t size = 0;
  E820Type type = E820Type::kReserved;
  uint64_t end() const { return address + size; }
  bool operator==(const E820Entry&) const = default;
};

// Sorted by address, non-overlapping: usable RAM below the EBDA, the EBDA and
// the legacy 0xA0000-0xFFFFF area as reserved, usable RAM from 1 MiB to the
// hole, the ECAM window and the IOAPIC..4 GiB chipset range as reserved, and
// RAM above 4 GiB. The 32-bit PCI BAR window is deliberately left out (a gap),
// which is how a guest tells where to put PCI devices.
std::vector<E820Entry> e820_map(const MemoryLayout& layout);

// The map as fw_cfg's etc/e820 carries it to firmware: packed 20-byte
// entries, u64 address, u64 length, u32 type, little-endian.
std::vector<uint8_t> encode_e820_table(const std::vector<E820Entry>& map);

// True when [address, address + size) lies inside one usable-RAM entry.
bool is_usable_ram(const std::vector<E820Entry>& map, uint64_t address, uint64_t size);

}  // namespace hostvisor::arch
