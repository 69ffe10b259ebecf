#include "memory/guest_memory.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <vector>

namespace hostvisor {
namespace {

GuestMemory two_regions(const MemoryBackingOptions& options = {}) {
  auto m = GuestMemory::create({{GuestAddress(0), 0x10000}, {GuestAddress(0x100000), 0x2000}}, options);
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

TEST(GuestMemory, PrivateAnonymousByDefault) {
  GuestMemory m = two_regions();
  EXPECT_EQ(m.kind(), MemoryKind::kPrivateAnonymous);
  EXPECT_EQ(m.memfd(), -1);
  EXPECT_EQ(m.regions()[1].file_offset, 0x10000u);  // the layout a memory file gets
}

TEST(GuestMemory, SharedRegionsShareOneMemfd) {
  GuestMemory m = two_regions({.shared = true});
  EXPECT_EQ(m.kind(), MemoryKind::kSharedMemfd);
  ASSERT_GE(m.memfd(), 0);
  ASSERT_EQ(m.regions().size(), 2u);
  EXPECT_EQ(m.regions()[1].file_offset, 0x10000u);
}

TEST(GuestMemory, ZeroLengthAccessInsideIsFine) {
  GuestMemory m = two_regions();
  EXPECT_TRUE(m.contains(GuestAddress(0), 0));
  EXPECT_FALSE(m.contains(GuestAddress(0x50000), 0));
}

// Bytes the memfd really holds (its allocated blocks), not its size.
uint64_t allocated_bytes(int fd) {
  struct stat st;
  EXPECT_EQ(::fstat(fd, &st), 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

TEST(GuestMemoryDiscard, SharedMemfdGetsAHolePunched) {
  GuestMemory m = two_regions({.shared = true});
  ASSERT_EQ(m.discard_granularity(), 4096u);
  ASSERT_TRUE(m.fill(GuestAddress(0), 0xaa, 0x10000).ok());
  const uint64_t before = allocated_bytes(m.memfd());
  ASSERT_GE(before, 0x10000u);
  ASSERT_TRUE(m.discard(GuestAddress(0x4000), 0x8000).ok());
  EXPECT_EQ(allocated_bytes(m.memfd()), before - 0x8000);
  EXPECT_EQ(*m.read_obj<uint8_t>(GuestAddress(0x3fff)), 0xaa);
  EXPECT_EQ(*m.read_obj<uint64_t>(GuestAddress(0x4000)), 0u);
  EXPECT_EQ(*m.read_obj<uint64_t>(GuestAddress(0xbff8)), 0u);
  EXPECT_EQ(*m.read_obj<uint8_t>(GuestAddress(0xc000)), 0xaa);
  // The page is usable again afterwards.
  ASSERT_TRUE(m.write_obj<uint32_t>(GuestAddress(0x5000), 7).ok());
  EXPECT_EQ(*m.read_obj<uint32_t>(GuestAddress(0x5000)), 7u);
}

TEST(GuestMemoryDiscard, TellsTheObserverTheRangeChanged) {
  GuestMemory m = two_regions();
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  m.set_dma_write_observer([&](GuestAddress at, uint64_t length) { seen.emplace_back(at.value(), length); });
  ASSERT_TRUE(m.discard(GuestAddress(0x100000), 0x1000).ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], std::make_pair(uint64_t{0x100000}, uint64_t{0x1000}));
}

TEST(GuestMemoryDiscard, RejectsBadRanges) {
  GuestMemory m = two_regions();
  ASSERT_TRUE(m.fill(GuestAddress(0), 0x55, 0x10000).ok());
  EXPECT_FALSE(m.discard(GuestAddress(0x800), 0x1000).ok());     // unaligned start
  EXPECT_FALSE(m.discard(GuestAddress(0x1000), 0x800).ok());     // unaligned length
  EXPECT_FALSE(m.discard(GuestAddress(0xf000), 0x2000).ok());    // past the region's end
  EXPECT_FALSE(m.discard(GuestAddress(0x20000), 0x1000).ok());   // the hole
  EXPECT_FALSE(m.discard(GuestAddress(0x1000), UINT64_MAX & ~0xfffull).ok());
  EXPECT_FALSE(m.discard(GuestAddress(0xfffffffffffff000ull), 0x2000).ok());
  auto r = m.discard(GuestAddress(0x800), 0x1000);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message().find("4 KiB"), std::string::npos) << r.error().message();
  // None of the refused calls touched RAM.
  for (uint64_t at = 0; at < 0x10000; at += 0x800) EXPECT_EQ(*m.read_obj<uint8_t>(GuestAddress(at)), 0x55) << at;
  EXPECT_TRUE(m.discard(GuestAddress(0x2000), 0).ok());
}

TEST(GuestMemoryDiscard, PrivateFileMappingReadsZerosNotTheFile) {
  // A snapshot-style memory file full of 0x77.
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  std::vector<uint8_t> content(0x4000, 0x77);
  ASSERT_EQ(::pwrite(::fileno(file), content.data(), content.size(), 0), static_cast<ssize_t>(content.size()));
  auto m = GuestMemory::map_private({{GuestAddress(0), 0x4000}}, UniqueFd(::dup(::fileno(file))));
  std::fclose(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  ASSERT_TRUE(m->write_obj<uint8_t>(GuestAddress(0x1000), 0x11).ok());  // a copy-on-write page
  ASSERT_TRUE(m->discard(GuestAddress(0x1000), 0x2000).ok());
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(0x1000)), 0u);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(0x2fff)), 0u);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(0x0fff)), 0x77);
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(0x3000)), 0x77);
  ASSERT_TRUE(m->write_obj<uint8_t>(GuestAddress(0x1000), 0x22).ok());
  EXPECT_EQ(*m->read_obj<uint8_t>(GuestAddress(0x1000)), 0x22);
}

}  // namespace
}  // namespace hostvisor
