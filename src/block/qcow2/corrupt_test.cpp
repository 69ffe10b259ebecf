// Hand-made corrupt qcow2 files: each must fail with an error that says what is wrong.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "block/image_open.h"
#include "block/qcow2/check.h"
#include "block/qcow2/format.h"
#include "block/qcow2/image.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

using namespace qcow2;

class Qcow2Corrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("c.qcow2");
    Qcow2CreateOptions co;
    co.size = 8 << 20;
    ASSERT_TRUE(Qcow2Image::create(path_, co).ok());
    OpenOptions o;
    o.writable = true;
    auto d = open_image(path_, o);
    ASSERT_TRUE(d.ok());
    std::vector<uint8_t> buf(100000, 0x61);
    ASSERT_TRUE((*d)->write(0, buf.data(), buf.size()).ok());
  }
  void poke64(uint64_t offset, uint64_t value) {
    uint8_t b[8];
    store_be64(b, value);
    poke(offset, b, 8);
  }
  void poke32(uint64_t offset, uint32_t value) {
    uint8_t b[4];
    store_be32(b, value);
    poke(offset, b, 4);
  }
  void poke(uint64_t offset, const uint8_t* b, size_t n) {
    int fd = ::open(path_.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, b, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
    ::close(fd);
  }
  uint64_t peek64(uint64_t offset) {
    uint8_t b[8] = {};
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(pread(fd, b, 8, static_cast<off_t>(offset)), 8);
    ::close(fd);
    return load_be64(b);
  }
  std::string open_error() {
    OpenOptions o;
    o.format = ImageFormat::kQcow2;
    auto d = open_image(path_, o);
    if (d.ok()) {
      std::vector<uint8_t> buf(8 << 20);
      auto r = (*d)->read(0, buf.data(), buf.size());
      return r.ok() ? "" : r.error().message();
    }
    return d.error().message();
  }
  testing::ScratchDir dir_;
  std::string path_;
};

TEST_F(Qcow2Corrupt, BadMagic) {
  poke32(0, 0x12345678);
  EXPECT_NE(open_error().find("bad magic"), std::string::npos);
}

TEST_F(Qcow2Corrupt, ClusterBitsOutOfRange) {
  poke32(20, 40);
  EXPECT_NE(open_error().find("cluster_bits 40"), std::string::npos) << open_error();
}

TEST_F(Qcow2Corrupt, L1TableOutsideFile) {
  poke64(40, uint64_t{1} << 40);
  EXPECT_NE(open_error().find("L1 table"), std::string::npos) << open_error();
}

TEST_F(Qcow2Corrupt, L1TooSmallForVirtualSize) {
  poke64(24, uint64_t{1} << 40);
  EXPECT_NE(open_error().find("virtual size needs"), std::string::npos) << open_error();
}

TEST_F(Qcow2Corrupt, RefcountTableOutOfRange) {
  poke64(48, uint64_t{1} << 45);
  std::string e = open_error();
  EXPECT_NE(e.find("refcount table"), std::string::npos) << e;
  EXPECT_NE(e.find("outside the file"), std::string::npos) << e;
  auto c = check_qcow2(path_, false);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message().find("refcount table"), std::string::npos);
}

// A file too large for the check's reference map is refused, not checked in
// part (a partial map once reported real clusters as past the end of the file).
TEST(Qcow2CheckLimits, ImageBeyondTheReferenceMapIsRefused) {
  testing::ScratchDir dir;
  const std::string path = dir.file("huge.qcow2");
  Qcow2CreateOptions co;
  co.size = 1 << 20;
  co.cluster_bits = 9;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(((uint64_t{1} << 28) + 1) * 512)), 0);  // sparse
  auto c = check_qcow2(path, true);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kUnsupported) << c.error().message();
  EXPECT_NE(c.error().message().find("qemu-img check"), std::string::npos) << c.error().message();
}

TEST_F(Qcow2Corrupt, RefcountBlockPastEndOfFile) {
  uint64_t table = peek64(48);
  poke64(table, uint64_t{1} << 30);
  OpenOptions o;
  o.writable = true;
  auto d = open_image(path_, o);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("refcount table entry 0"), std::string::npos) << d.error().message();
}

TEST_F(Qcow2Corrupt, L2EntryWithReservedBits) {
  uint64_t l1 = peek64(40);
  uint64_t l2 = peek64(l1) & kOffsetMask;
  poke64(l2, peek64(l2) | 0x100);  // bit 8 is reserved
  std::string e = open_error();
  EXPECT_NE(e.find("reserved bits"), std::string::npos) << e;
  auto c = check_qcow2(path_, false);
  ASSERT_TRUE(c.ok());
  EXPECT_GT(c->corruptions, 0u);
}

TEST_F(Qcow2Corrupt, UnknownIncompatibleFeature) {
  poke64(72, 1ULL << 40);
  std::string e = open_error();
  EXPECT_NE(e.find("unknown incompatible features"), std::string::npos) << e;
}

TEST_F(Qcow2Corrupt, CorruptFlagIsClearedByRepair) {
  poke64(72, kIncompatCorrupt);
  EXPECT_NE(open_error().find("marked corrupt"), std::string::npos) << open_error();
  auto c = check_qcow2(path_, false);
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->corruptions, 1u);
  auto r = check_qcow2(path_, true);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(r->repaired);
  EXPECT_EQ(open_error(), "");
}

TEST_F(Qcow2Corrupt, DirtyLazyRefcountImageNeedsRepairBeforeWriting) {
  poke64(72, kIncompatDirty);
  EXPECT_EQ(open_error(), "");  // reading does not depend on refcounts
  OpenOptions o;
  o.writable = true;
  auto d = open_image(path_, o);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("--repair"), std::string::npos) << d.error().message();
  auto r = check_qcow2(path_, true);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(r->repaired);
  EXPECT_TRUE(open_image(path_, o).ok());
}

TEST_F(Qcow2Corrupt, TruncatedHeader) {
  ASSERT_EQ(truncate(path_.c_str(), 50), 0);
  EXPECT_NE(open_error().find("too short"), std::string::npos) << open_error();
}

TEST_F(Qcow2Corrupt, BackingNameOutsideHeader) {
  poke64(8, 65530);
  poke32(16, 100);
  EXPECT_NE(open_error().find("backing file name"), std::string::npos) << open_error();
}

TEST_F(Qcow2Corrupt, CheckRepairFixesLeaksAndRefcountErrors) {
  // Leak a cluster and zero another one's refcount.
  uint64_t table = peek64(48);
  uint64_t block = peek64(table);
  uint8_t leak[2] = {0, 1};
  poke(block + 2 * 200, leak, 2);  // cluster 200 is past the end: leaked
  uint8_t zero[2] = {0, 0};
  poke(block + 2 * 4, zero, 2);  // cluster 4 (a data cluster) now has refcount 0
  auto before = check_qcow2(path_, false);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->leaks, 1u);
  EXPECT_GE(before->corruptions, 1u);
  auto repaired = check_qcow2(path_, true);
  ASSERT_TRUE(repaired.ok()) << repaired.error().message();
  EXPECT_TRUE(repaired->repaired);
  auto after = check_qcow2(path_, false);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->clean()) << (after->messages.empty() ? "" : after->messages[0]);
  std::string out;
  EXPECT_EQ(testing::run_command("qemu-img check '" + path_ + "'", &out), 0) << out;
  EXPECT_EQ(open_error(), "");
}

}  // namespace
}  // namespace hostvisor::block
