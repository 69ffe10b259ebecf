#include "devices/pci/pci_bar_allocator.h"

#include <bit>
#include <string>

#include "devices/pci/pci_layout.h"

namespace hostvisor {

PciBarAllocator::PciBarAllocator(std::vector<Range> memory, Range io) : memory_(std::move(memory)), io_(io) {}

PciBarAllocator PciBarAllocator::standard() {
  using namespace pci;
  std::vector<Range> memory;
  const uint64_t ecam_end = kEcamBase + kEcamSize;
  if (ecam_end <= kMmioHoleStart || kEcamBase >= kMmioHoleEnd) {
    memory.push_back({kMmioHoleStart, kMmioHoleEnd});
  } else {
    if (kEcamBase > kMmioHoleStart) memory.push_back({kMmioHoleStart, kEcamBase});
    if (ecam_end < kMmioHoleEnd) memory.push_back({ecam_end, kMmioHoleEnd});
  }
  return PciBarAllocator(std::move(memory), {kIoBarStart, kIoBarEnd});
}

Result<uint64_t> PciBarAllocator::allocate_in(Range& range, uint64_t size) {
  if (range.start >= range.end) return Error(ErrorCode::kOutOfRange, "empty range");
  // Overflow-safe round-up: the aligned start must stay inside the range.
  const uint64_t misalign = range.start & (size - 1);
  const uint64_t pad = misalign ? size - misalign : 0;
  if (pad > range.end - range.start || size > range.end - range.start - pad)
    return Error(ErrorCode::kOutOfRange, "range exhausted");
  const uint64_t address = range.start + pad;
  range.start = address + size;
  return address;
}

Result<uint64_t> PciBarAllocator::allocate(PciBarKind kind, uint64_t size) {
  if (!std::has_single_bit(size)) return Error(ErrorCode::kInvalidArgument, "BAR size must be a power of two");
  if (kind == PciBarKind::kIo) {
    auto r = allocate_in(io_, size);
    if (!r)
      return Error(ErrorCode::kOutOfRange, "no PCI I/O port space left for a " + std::to_string(size) +
                                               "-byte BAR; use fewer devices with I/O BARs");
    return r;
  }
  for (auto& range : memory_) {
    auto r = allocate_in(range, size);
    if (r) return r;
  }
  return Error(ErrorCode::kOutOfRange, "no room in the PCI MMIO hole for a " + std::to_string(size) +
                                           "-byte BAR; use fewer or smaller PCI devices");
}

}  // namespace hostvisor
