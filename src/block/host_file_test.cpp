#include "block/host_file.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

TEST(HostFile, DirectIoBouncesUnalignedRequestsAndKeepsNeighbours) {
  testing::ScratchDir dir;
  HostFileOptions o;
  o.create = true;
  o.cache = CacheMode::kNone;
  auto f = HostFile::open(dir.file("d"), o);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ((*f)->alignment(), 4096u);
  std::vector<uint8_t> big(3 * 4096, 0xaa);
  ASSERT_TRUE((*f)->write(0, big.data(), big.size()).ok());
  // Unaligned offset, length and buffer: read-modify-write of the edge blocks.
  std::vector<uint8_t> odd(5000, 0x55);
  ASSERT_TRUE((*f)->write(1001, odd.data() + 1, 4000).ok());
  std::vector<uint8_t> back(3 * 4096);
  ASSERT_TRUE((*f)->read(0, back.data() + 0, back.size()).ok());
  for (size_t i = 0; i < back.size(); ++i) {
    uint8_t want = (i >= 1001 && i < 5001) ? 0x55 : 0xaa;
    ASSERT_EQ(back[i], want) << "at " << i;
  }
  // Reads past the end of the file are zeros.
  std::vector<uint8_t> tail(100, 1);
  ASSERT_TRUE((*f)->read(3 * 4096 - 10, tail.data(), tail.size()).ok());
  EXPECT_EQ(tail[9], 0xaa);
  EXPECT_EQ(tail[10], 0);
  EXPECT_TRUE((*f)->flush().ok());
}

TEST(HostFile, ReadOnlyRefusesWrites) {
  testing::ScratchDir dir;
  HostFileOptions o;
  o.create = true;
  ASSERT_TRUE(HostFile::open(dir.file("r"), o).ok());
  auto f = HostFile::open(dir.file("r"), HostFileOptions{});
  ASSERT_TRUE(f.ok());
  uint8_t b = 1;
  auto r = (*f)->write(0, &b, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("read-only"), std::string::npos);
}

TEST(HostFile, MissingFileSaysWhich) {
  auto f = HostFile::open("/nonexistent/dir/image.qcow2", HostFileOptions{});
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message().find("/nonexistent/dir/image.qcow2"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor::block
