#include "memory/guest_memory.h"

#include <gtest/gtest.h>

#include <array>

namespace hostvisor {
namespace {

GuestMemory two_regions() {
  auto m = GuestMemory::create({{GuestAddress(0), 0x10000}, {GuestAddress(0x100000), 0x2000}});
  EXPECT_TRUE(m.ok());
  return std::move(m).value();
}

TEST(GuestMemory, ReadsBackWhatWasWritten) {
  GuestMemory m = two_regions();
  ASSERT_TRUE(m.write_obj<uint64_t>(GuestAddress(0x1234), 0x1122334455667788ull).ok());
  auto v = m.read_obj<uint64_t>(GuestAddress(0x1234));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x1122334455667788ull);
  ASSERT_TRUE(m.write_obj<uint32_t>(GuestAddress(0x101ffc), 0xdeadbeef).ok());
  EXPECT_EQ(*m.read_obj<uint32_t>(GuestAddress(0x101ffc)), 0xdeadbeefu);
  EXPECT_EQ(m.total_size(), 0x12000u);
}

TEST(GuestMemory, RejectsAccessPastRegionEnd) {
  GuestMemory m = two_regions();
  EXPECT_FALSE(m.read_obj<uint32_t>(GuestAddress(0xfffe)).ok());  // straddles the end
  EXPECT_FALSE(m.read_obj<uint8_t>(GuestAddress(0x10000)).ok());  // the hole
  EXPECT_FALSE(m.read_obj<uint8_t>(GuestAddress(0x102000)).ok());
  EXPECT_TRUE(m.read_obj<uint16_t>(GuestAddress(0xfffe)).ok());
}

TEST(GuestMemory, RejectsAccessSpanningTwoRegions) {
  auto m = GuestMemory::create({{GuestAddress(0), 0x1000}, {GuestAddress(0x1000), 0x1000}});
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->read_obj<uint32_t>(GuestAddress(0xffe)).ok());
  EXPECT_TRUE(m->read_obj<uint32_t>(GuestAddress(0x1000)).ok());
}

TEST(GuestMemory, OverflowingAddressesNeverWrap) {
  GuestMemory m = two_regions();
  std::array<uint8_t, 16> buf{};
  EXPECT_FALSE(m.read(GuestAddress(UINT64_MAX), buf).ok());
  EXPECT_FALSE(m.read(GuestAddress(UINT64_MAX - 4), buf).ok());
  EXPECT_FALSE(m.slice(GuestAddress(0x10), UINT64_MAX).ok());
  EXPECT_FALSE(m.slice(GuestAddress(0x10), UINT64_MAX - 0x8).ok());
  EXPECT_EQ(m.host_pointer(GuestAddress(0x1000), UINT64_MAX), nullptr);
  EXPECT_FALSE(m.fill(GuestAddress(0xfff0), 0, 0x20).ok());
}

TEST(GuestMemory, ErrorNamesTheAddress) {
  GuestMemory m = two_regions();
  auto r = m.read_obj<uint32_t>(GuestAddress(0x20000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(r.error().message().find("0x20000"), std::string::npos);
}

TEST(GuestMemory, RejectsBadLayouts) {
  EXPECT_FALSE(GuestMemory::create({}).ok());
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0), 0x1001}}).ok());
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0x10), 0x1000}}).ok());
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0), 0x2000}, {GuestAddress(0x1000), 0x1000}}).ok());
  EXPECT_FALSE(GuestMemory::create({{GuestAddress(0xfffffffffffff000ull), 0x2000}}).ok());
}

TEST(GuestMemory, RegionsShareOneMemfd) {
  GuestMemory m = two_regions();
  ASSERT_GE(m.memfd(), 0);
  ASSERT_EQ(m.regions().size(), 2u);
  EXPECT_EQ(m.regions()[1].file_offset, 0x10000u);
}

TEST(GuestMemory, ZeroLengthAccessInsideIsFine) {
  GuestMemory m = two_regions();
  EXPECT_TRUE(m.contains(GuestAddress(0), 0));
  EXPECT_FALSE(m.contains(GuestAddress(0x50000), 0));
}

}  // namespace
}  // namespace hostvisor
