#include "arch/x86_64/e820.h"

#include <gtest/gtest.h>

namespace hostvisor::arch {
namespace {

TEST(E820, SmallRamMap) {
  auto map = e820_map(*memory_layout(64 * kMiB));
  const std::vector<E820Entry> expected = {
      {0, 0x9fc00, E820Type::kRam},
      {0x9fc00, 0x400, E820Type::kReserved},
      {0xa0000, 0x60000, E820Type::kReserved},
      {0x100000, 63 * kMiB, E820Type::kRam},
      {0xb0000000, 0x10000000, E820Type::kReserved},
      {0xfec00000, 0x01400000, E820Type::kReserved},
  };
  EXPECT_EQ(map, expected);
}

TEST(E820, LargeRamMapHasHighRamAndLeavesThePciWindowAGap) {
  auto map = e820_map(*memory_layout(8 * kGiB));
  ASSERT_EQ(map.size(), 7u);
  EXPECT_EQ(map[3], (E820Entry{0x100000, 0xb0000000 - 0x100000, E820Type::kRam}));
  EXPECT_EQ(map[6], (E820Entry{4 * kGiB, 8 * kGiB - 0xb0000000, E820Type::kRam}));
  uint64_t usable = 0;
  for (const auto& e : map) {
    if (e.type == E820Type::kRam) usable += e.size;
    // Nothing claims the 32-bit PCI BAR window.
    EXPECT_FALSE(e.address < kPciMmio32End && e.end() > kPciMmio32Start) << std::hex << e.address;
  }
  // All RAM is listed except what the EBDA and legacy area cover.
  EXPECT_EQ(usable, 8 * kGiB - (kHighMemoryStart - kEbdaStart));
}

TEST(E820, SortedAndDisjointForManySizes) {
  for (uint64_t size : {2 * kMiB, 3 * kMiB, 512 * kMiB, kLowRamMaxEnd, kLowRamMaxEnd + kPageSize, 64 * kGiB}) {
    auto map = e820_map(*memory_layout(size));
    for (size_t i = 1; i < map.size(); ++i) EXPECT_LE(map[i - 1].end(), map[i].address) << size;
  }
}

TEST(E820, UsableRamChecksWholeRangeWithoutOverflow) {
  auto map = e820_map(*memory_layout(64 * kMiB));
  EXPECT_TRUE(is_usable_ram(map, 0x100000, 63 * kMiB));
  EXPECT_FALSE(is_usable_ram(map, 0x100000, 63 * kMiB + 1));
  EXPECT_FALSE(is_usable_ram(map, 0x9f000, 0x1000));  // runs into the EBDA
  EXPECT_FALSE(is_usable_ram(map, 0xa0000, 0x10));    // legacy area
  EXPECT_FALSE(is_usable_ram(map, 0xb0000000, 1));
  EXPECT_FALSE(is_usable_ram(map, 0x200000, UINT64_MAX));
  EXPECT_FALSE(is_usable_ram(map, UINT64_MAX, 2));
  EXPECT_TRUE(is_usable_ram(map, 0x500, 0x1000));
}

}  // namespace
}  // namespace hostvisor::arch

namespace hostvisor::arch {
namespace {

TEST(E820, EncodesFwCfgTableAsPacked20ByteEntries) {
  const std::vector<E820Entry> map = {{0x1000, 0x9e000, E820Type::kRam},
                                      {0x100000000ull, 0x123456789ull, E820Type::kReserved}};
  const std::vector<uint8_t> table = encode_e820_table(map);
  ASSERT_EQ(table.size(), 40u);
  const std::vector<uint8_t> first = {0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0xe0, 0x09, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(table.begin(), table.begin() + 20), first);
  const std::vector<uint8_t> second = {0, 0, 0, 0, 1, 0, 0, 0, 0x89, 0x67, 0x45, 0x23, 1, 0, 0, 0, 2, 0, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(table.begin() + 20, table.end()), second);
}

}  // namespace
}  // namespace hostvisor::arch
