#include "arch/x86_64/e820.h"

namespace hostvisor::arch {

std::vector<E820Entry> e820_map(const MemoryLayout& layout) {
  std::vector<E820Entry> map;
  map.push_back({0, kEbdaStart, E820Type::kRam});
  map.push_back({kEbdaStart, kEbdaSize, E820Type::kReserved});
  map.push_back({kLegacyAreaStart, kLegacyAreaEnd - kLegacyAreaStart, E820Type::kReserved});
  if (layout.low_ram_end > kHighMemoryStart)
    map.push_back({kHighMemoryStart, layout.low_ram_end - kHighMemoryStart, E820Type::kRam});
  map.push_back({kPciEcamStart, kPciEcamSize, E820Type::kReserved});
  map.push_back({kPlatformMmioStart, kHighRamStart - kPlatformMmioStart, E820Type::kReserved});
  if (layout.high_ram_size > 0) map.push_back({kHighRamStart, layout.high_ram_size, E820Type::kRam});
  return map;
}

std::vector<uint8_t> encode_e820_table(const std::vector<E820Entry>& map) {
  std::vector<uint8_t> out;
  auto put = [&out](uint64_t value, size_t size) {
    for (size_t i = 0; i < size; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  };
  for (const auto& e : map) {
    put(e.address, 8);
    put(e.size, 8);
    put(static_cast<uint32_t>(e.type), 4);
  }
  return out;
}

bool is_usable_ram(const std::vector<E820Entry>& map, uint64_t address, uint64_t size) {
  for (const auto& e : map) {
    if (e.type != E820Type::kRam) continue;
    // Overflow-safe: offsets inside the entry, never address + size.
    if (address >= e.address && address - e.address <= e.size && size <= e.size - (address - e.address)) return true;
  }
  return false;
}

}  // namespace hostvisor::arch
