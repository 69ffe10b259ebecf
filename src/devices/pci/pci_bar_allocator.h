// Hands out guest-physical (and port) addresses for BARs, as firmware does
// at boot: naturally aligned bump allocation in the MMIO hole (minus the
// ECAM window) and in the I/O BAR port range. Addresses are never reused;
// the guest may move BARs later and the root follows.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "devices/pci/pci_config_space.h"

namespace hostvisor {

class PciBarAllocator {
 public:
  struct Range {
    uint64_t start;
    uint64_t end;  // exclusive
  };

  PciBarAllocator(std::vector<Range> memory, Range io);
  // The layout in pci_layout.h: [kMmioHoleStart, kMmioHoleEnd) without the ECAM window.
  static PciBarAllocator standard();

  // A `size`-aligned block of `size` bytes (size a power of two).
  Result<uint64_t> allocate(PciBarKind kind, uint64_t size);

 private:
  static Result<uint64_t> allocate_in(Range& range, uint64_t size);
  std::vector<Range> memory_;  // unallocated tails
  Range io_;
};

}  // namespace hostvisor
