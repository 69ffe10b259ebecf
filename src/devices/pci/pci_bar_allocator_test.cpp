#include "devices/pci/pci_bar_allocator.h"

#include <gtest/gtest.h>

#include "devices/pci/pci_layout.h"

namespace hostvisor {
namespace {

TEST(PciBarAllocator, NaturallyAlignsAndNeverOverlaps) {
  PciBarAllocator a({{0x1000, 0x100000}}, {0xc000, 0x10000});
  EXPECT_EQ(*a.allocate(PciBarKind::kMemory32, 0x1000), 0x1000u);
  EXPECT_EQ(*a.allocate(PciBarKind::kMemory32, 0x4000), 0x4000u);
  EXPECT_EQ(*a.allocate(PciBarKind::kMemory64, 0x1000), 0x8000u);
  EXPECT_EQ(*a.allocate(PciBarKind::kIo, 0x20), 0xc000u);
  EXPECT_EQ(*a.allocate(PciBarKind::kIo, 0x4), 0xc020u);
  EXPECT_FALSE(a.allocate(PciBarKind::kMemory32, 0x3000).ok());
}

TEST(PciBarAllocator, ExhaustionIsAnErrorNotAWrap) {
  PciBarAllocator a({{0xfffffffffffff000ull, 0xffffffffffffffffull}}, {0xfff0, 0x10000});
  EXPECT_FALSE(a.allocate(PciBarKind::kMemory64, 0x2000).ok());
  EXPECT_FALSE(a.allocate(PciBarKind::kMemory64, 1ull << 63).ok());
  EXPECT_FALSE(a.allocate(PciBarKind::kIo, 0x20).ok());
  EXPECT_EQ(*a.allocate(PciBarKind::kIo, 0x10), 0xfff0u);
}

TEST(PciBarAllocator, StandardLayoutStaysInTheHoleAndOutOfEcam) {
  PciBarAllocator a = PciBarAllocator::standard();
  EXPECT_EQ(*a.allocate(PciBarKind::kMemory32, 0x1000), pci::kMmioHoleStart);
  uint64_t total = 0x1000;
  for (;;) {
    auto next = a.allocate(PciBarKind::kMemory32, 0x1000000);
    if (!next) break;
    EXPECT_GE(*next, pci::kMmioHoleStart);
    EXPECT_LE(*next + 0x1000000, pci::kMmioHoleEnd);
    EXPECT_TRUE(*next + 0x1000000 <= pci::kEcamBase || *next >= pci::kEcamBase + pci::kEcamSize);
    total += 0x1000000;
  }
  EXPECT_GT(total, 900ull << 20);  // most of the ~1 GiB window is usable
  EXPECT_EQ(*a.allocate(PciBarKind::kIo, 0x100), pci::kIoBarStart);
}

}  // namespace
}  // namespace hostvisor
