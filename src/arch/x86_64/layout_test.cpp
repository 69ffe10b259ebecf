#include "arch/x86_64/layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <utility>

namespace hostvisor::arch {
namespace {

TEST(MemoryLayout, SmallRamIsOneRegionFromZero) {
  auto layout = memory_layout(64 * kMiB);
  ASSERT_TRUE(layout.ok()) << layout.error().message();
  EXPECT_EQ(layout->low_ram_end, 64 * kMiB);
  EXPECT_EQ(layout->high_ram_size, 0u);
  auto regions = layout->regions();
  ASSERT_EQ(regions.size(), 1u);
  EXPECT_EQ(regions[0].start.value(), 0u);
  EXPECT_EQ(regions[0].size, 64 * kMiB);
}

TEST(MemoryLayout, LargeRamSplitsAroundThe32BitHole) {
  auto layout = memory_layout(6 * kGiB);
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->low_ram_end, 0xb0000000u);
  EXPECT_EQ(layout->high_ram_size, 6 * kGiB - 0xb0000000u);
  auto regions = layout->regions();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[1].start.value(), 4 * kGiB);
  EXPECT_EQ(regions[0].size + regions[1].size, 6 * kGiB);
  EXPECT_EQ(layout->high_ram_end(), 4 * kGiB + regions[1].size);
}

TEST(MemoryLayout, RamJustBelowTheHoleStaysLow) {
  auto layout = memory_layout(kLowRamMaxEnd);
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->regions().size(), 1u);
}

TEST(MemoryLayout, RejectsUnusableSizes) {
  EXPECT_FALSE(memory_layout(0).ok());
  EXPECT_FALSE(memory_layout(1 * kMiB).ok());
  EXPECT_FALSE(memory_layout(64 * kMiB + 100).ok());
  EXPECT_FALSE(memory_layout(2 * 1024 * kGiB).ok());
  auto r = memory_layout(64 * kMiB + 100);
  EXPECT_NE(r.error().message().find("4 KiB"), std::string::npos);
}

TEST(MemoryLayout, BootStructuresAreDisjointAndInConventionalMemory) {
  std::vector<std::pair<uint64_t, uint64_t>> areas = {
      {kBootGdtAddress, kPageSize},
      {kPvhStartInfoAddress, kPageSize},
      {kMultibootInfoAddress, kPageSize},
      {kZeroPageAddress, kPageSize},
      {kBootPml4Address, kPageSize},
      {kBootPdptAddress, kPageSize},
      {kBootPdAddress, kBootPdCount * kPageSize},
      {kCmdlineAddress, kCmdlineMaxSize},
  };
  std::sort(areas.begin(), areas.end());
  for (size_t i = 0; i < areas.size(); ++i) {
    EXPECT_GE(areas[i].first, kBootStructuresStart);
    EXPECT_LE(areas[i].first + areas[i].second, kBootStructuresEnd);
    EXPECT_EQ(areas[i].first % kPageSize, 0u);
    if (i > 0) EXPECT_LE(areas[i - 1].first + areas[i - 1].second, areas[i].first);
  }
  EXPECT_LE(kBootStructuresEnd, kEbdaStart);
  EXPECT_GE(kBootStructuresStart, kBiosDataAreaEnd);
}

TEST(MemoryLayout, HoleHoldsEcamPciWindowVirtioMmioAndApics) {
  EXPECT_LT(kPciEcamStart, kPciMmio32Start);
  EXPECT_EQ(kPciMmio32Start, 3 * kGiB);
  EXPECT_LE(kPciMmio32End, kVirtioMmioStart);
  EXPECT_LE(kVirtioMmioStart + kVirtioMmioSlots * kVirtioMmioStride, kIoApicAddress);
  EXPECT_LE(kPciMmio32End, kIoApicAddress);
  EXPECT_LT(kIoApicAddress, kLapicAddress);
  EXPECT_LT(kLapicAddress, kHighRamStart);
  EXPECT_LE(kLowRamMaxEnd, kPciEcamStart);
}

}  // namespace
}  // namespace hostvisor::arch
