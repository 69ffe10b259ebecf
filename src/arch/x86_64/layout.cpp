#include "arch/x86_64/layout.h"

#include <string>

namespace hostvisor::arch {

static_assert(kBootStructuresEnd <= kEbdaStart, "boot structures must stay in conventional memory");
static_assert(kBootPdAddress + kBootPdCount * kPageSize <= kCmdlineAddress, "page tables overlap the command line");
static_assert(kZeroPageAddress + kPageSize <= kBootPml4Address, "zero page overlaps the page tables");
static_assert(kPciEcamStart + kPciEcamSize == kPciMmio32Start, "ECAM sits just below the PCI MMIO window");
static_assert(kPciMmio32End <= kVirtioMmioStart, "the PCI BAR window must not reach the virtio-mmio devices");
static_assert(kVirtioMmioStart + kVirtioMmioSlots * kVirtioMmioStride <= kVirtioMmioEnd &&
                  kVirtioMmioEnd <= kIoApicAddress,
              "the virtio-mmio slots must fit below the IOAPIC");
static_assert(kVirtioMmioFirstGsi + kVirtioMmioSlots <= 24, "an IOAPIC has 24 pins (GSIs 0-23)");

std::vector<MemoryRegionSpec> MemoryLayout::regions() const {
  std::vector<MemoryRegionSpec> specs;
  specs.push_back({GuestAddress(0), low_ram_end});
  if (high_ram_size > 0) specs.push_back({GuestAddress(kHighRamStart), high_ram_size});
  return specs;
}

Result<MemoryLayout> memory_layout(uint64_t ram_size) {
  if (ram_size < kMinRamSize || ram_size > kMaxRamSize)
    return Error(ErrorCode::kInvalidArgument, "guest RAM size " + std::to_string(ram_size) +
                                                  " bytes is out of range: choose between 2 MiB and 1 TiB");
  if (ram_size % kPageSize != 0)
    return Error(ErrorCode::kInvalidArgument,
                 "guest RAM size " + std::to_string(ram_size) + " bytes is not a multiple of 4 KiB");
  MemoryLayout layout;
  layout.ram_size = ram_size;
  layout.low_ram_end = ram_size < kLowRamMaxEnd ? ram_size : kLowRamMaxEnd;
  layout.high_ram_size = ram_size - layout.low_ram_end;
  return layout;
}

}  // namespace hostvisor::arch
