// qcow2 metadata overlap protection: crafted images whose L1 or L2 entries
// point into the image's own metadata. Every write aimed there is refused,
// the image is marked corrupt (and then refuses every write and writable
// open), and the metadata's bytes stay as they were.
//
// With HV_QCOW2_FUZZ_SEEDS=DIR set, each crafted image is also copied to DIR
// (that is how fuzz/corpus/qcow2_image/overlap_* were made).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <vector>

#include "block/disk_option.h"
#include "block/image_open.h"
#include "block/qcow2/check.h"
#include "block/qcow2/format.h"
#include "block/qcow2/image.h"
#include "block/qcow2/metadata_map.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

using namespace qcow2;

// 512-byte clusters keep the images (and the fuzz seeds made from them) a few KiB.
constexpr uint32_t kClusterBits = 9;
constexpr uint64_t kCluster = 1u << kClusterBits;
constexpr uint64_t kL2Span = kCluster / 8 * kCluster;  // guest bytes one L2 table maps
constexpr uint64_t kDiskBytes = 1u << 20;

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint64_t be64_at(const std::vector<uint8_t>& b, uint64_t offset) { return load_be64(&b[offset]); }

void poke64(const std::string& path, uint64_t offset, uint64_t value) {
  uint8_t b[8];
  store_be64(b, value);
  int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, b, 8, static_cast<off_t>(offset)), 8);
  ::close(fd);
}

// Where the structures of the crafted image are, read back from the file.
struct Layout {
  uint64_t l1 = 0, reftable = 0, refblock = 0, snapshot_table = 0, snapshot_l1 = 0;
  uint64_t l2[2] = {};  // L2 tables of guest offsets 0 and kL2Span
};

Layout read_layout(const std::string& path) {
  std::vector<uint8_t> b = file_bytes(path);
  Layout l;
  l.l1 = be64_at(b, 40);
  l.reftable = be64_at(b, 48);
  l.snapshot_table = be64_at(b, 64);
  l.refblock = be64_at(b, l.reftable) & kOffsetMask;
  l.l2[0] = be64_at(b, l.l1) & kOffsetMask;
  l.l2[1] = be64_at(b, l.l1 + 8) & kOffsetMask;
  if (l.snapshot_table != 0) l.snapshot_l1 = be64_at(b, l.snapshot_table);
  return l;
}

// What a case aims at: a name, whether it needs an internal snapshot, and the target's offset.
struct Target {
  const char* name;
  bool snapshot;
  std::function<uint64_t(const Layout&)> offset;
};

// (Host offset 0 in an L1 or L2 entry means "unallocated", so only a
// compressed cluster can point into the header: see CompressedClusterInHeader.)
const Target kTargets[] = {
    {"l1_table", false, [](const Layout& l) { return l.l1; }},
    {"refcount_table", false, [](const Layout& l) { return l.reftable; }},
    {"refcount_block", false, [](const Layout& l) { return l.refblock; }},
    {"own_l2_table", false, [](const Layout& l) { return l.l2[0]; }},
    {"other_l2_table", false, [](const Layout& l) { return l.l2[1]; }},
    {"snapshot_table", true, [](const Layout& l) { return l.snapshot_table; }},
    {"snapshot_l1_table", true, [](const Layout& l) { return l.snapshot_l1; }},
};

void PrintTo(const Target& target, std::ostream* os) { *os << target.name; }

Result<std::unique_ptr<BlockDevice>> open_qcow2(const std::string& path, bool writable) {
  OpenOptions o;
  o.format = ImageFormat::kQcow2;
  o.writable = writable;
  return open_image(path, o);
}

// A small image with its first guest cluster written (so it has an L2 table).
void create_image_with_data(const std::string& path) {
  Qcow2CreateOptions co;
  co.size = kDiskBytes;
  co.cluster_bits = kClusterBits;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  auto d = open_qcow2(path, true);
  ASSERT_TRUE(d.ok()) << d.error().message();
  std::vector<uint8_t> data(kCluster, 0x61);
  ASSERT_TRUE((*d)->write(0, data.data(), data.size()).ok());
}

// Copies a crafted image into the fuzz corpus when HV_QCOW2_FUZZ_SEEDS names it.
void save_fuzz_seed(const std::string& path, const std::string& name) {
  const char* seeds = std::getenv("HV_QCOW2_FUZZ_SEEDS");
  if (seeds == nullptr) return;
  std::ofstream out(std::string(seeds) + "/overlap_" + name, std::ios::binary);
  std::vector<uint8_t> b = file_bytes(path);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

class Qcow2Overlap : public ::testing::TestWithParam<Target> {
 protected:
  void SetUp() override {
    path_ = dir_.file("crafted.qcow2");
    ASSERT_NO_FATAL_FAILURE(create_image_with_data(path_));
    auto d = open(true);
    ASSERT_TRUE(d.ok()) << d.error().message();
    // A second L2 table, for guest offset kL2Span.
    std::vector<uint8_t> data(kCluster, 0x62);
    ASSERT_TRUE((*d)->write(kL2Span, data.data(), data.size()).ok());
    if (GetParam().snapshot) ASSERT_TRUE(dynamic_cast<Qcow2Image&>(**d).create_snapshot("s").ok());
  }

  Result<std::unique_ptr<BlockDevice>> open(bool writable) { return open_qcow2(path_, writable); }

  // Saves the crafted image as a fuzz seed when asked to, and remembers the
  // bytes of the metadata cluster the craft aims at.
  void crafted(const std::string& name, uint64_t target) {
    save_fuzz_seed(path_, name);
    target_ = target;
    before_ = target_bytes();
  }

  // Points guest cluster 1's L2 entry at the target, flagged COPIED so a
  // write would go in place.
  Layout craft_data_entry() {
    Layout l = read_layout(path_);
    uint64_t target = GetParam().offset(l);
    EXPECT_NE(l.l2[0], 0u);
    poke64(path_, l.l2[0] + 8, target | kFlagCopied);
    crafted(std::string("data_") + GetParam().name, target);
    return l;
  }

  std::vector<uint8_t> target_bytes() {
    std::vector<uint8_t> b = file_bytes(path_);
    b.resize(std::max<size_t>(b.size(), target_ + kCluster));
    std::vector<uint8_t> t(b.begin() + static_cast<ptrdiff_t>(target_),
                           b.begin() + static_cast<ptrdiff_t>(target_ + kCluster));
    // The header changes in one place only: the corrupt bit in the incompatible features.
    if (target_ == 0) store_be64(&t[72], load_be64(&t[72]) & ~kIncompatCorrupt);
    return t;
  }

  void expect_marked_corrupt_and_untouched() {
    EXPECT_EQ(target_bytes(), before_) << "the metadata was written through";
    std::vector<uint8_t> b = file_bytes(path_);
    EXPECT_NE(be64_at(b, 72) & kIncompatCorrupt, 0u) << "the header's corrupt bit is not set";
    // Opening for writing is refused now, with the way out in the message.
    auto again = open(true);
    ASSERT_FALSE(again.ok());
    EXPECT_NE(again.error().message().find("hostvisor disk check --repair"), std::string::npos)
        << again.error().message();
  }

  testing::ScratchDir dir_;
  std::string path_;
  uint64_t target_ = 0;
  std::vector<uint8_t> before_;
};

std::string target_name(const ::testing::TestParamInfo<Target>& info) { return info.param.name; }

// An L2 entry that points guest cluster 1 at the target, flagged COPIED so a
// write would go in place; the synchronous write is refused.
TEST_P(Qcow2Overlap, DataClusterWriteIsRefused) {
  craft_data_entry();

  auto d = open(true);
  ASSERT_TRUE(d.ok()) << d.error().message();
  std::vector<uint8_t> evil(kCluster, 0xee);
  auto w = (*d)->write(kCluster, evil.data(), evil.size());
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message().find("marked corrupt"), std::string::npos) << w.error().message();
  // Later writes fail too, even to clusters that are fine, and say why.
  auto later = (*d)->write(0, evil.data(), evil.size());
  ASSERT_FALSE(later.ok());
  EXPECT_NE(later.error().message().find("disk check --repair"), std::string::npos) << later.error().message();
  d->reset();
  expect_marked_corrupt_and_untouched();
}

// The same entry written through the asynchronous path virtio-blk uses
// (`hostvisor run`), opened as `run --disk` opens it.
TEST_P(Qcow2Overlap, DataClusterSubmitIsRefused) {
  craft_data_entry();

  auto disk = parse_disk_option(path_ + ",format=qcow2");
  ASSERT_TRUE(disk.ok());
  auto d = open_image(disk->path, disk->open_options());
  ASSERT_TRUE(d.ok()) << d.error().message();
  BlockDevice& dev = **d;
  AlignedBuffer buf(kCluster);
  std::memset(buf.data(), 0xee, kCluster);
  auto run = [&](BlockOp op) {
    std::optional<Result<void>> got;
    dev.submit(BlockRequest{op, kCluster, {{buf.data(), kCluster}}, 0}, [&](Result<void> r) { got = std::move(r); });
    while (!got) dev.poll_completions(true);
    return std::move(*got);
  };
  // A read first, so the L2 table is cached and the write is planned on the direct path.
  ASSERT_TRUE(run(BlockOp::kRead).ok());
  std::memset(buf.data(), 0xee, kCluster);
  auto w = run(BlockOp::kWrite);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message().find("marked corrupt"), std::string::npos) << w.error().message();
  d->reset();
  expect_marked_corrupt_and_untouched();
}

// The entry is not written through but replaced (a zeroed or discarded
// cluster): its old cluster must not lose a reference, or the metadata there
// would be freed and handed out again.
TEST_P(Qcow2Overlap, DroppingTheReferenceIsRefused) {
  Layout l = craft_data_entry();
  std::vector<uint8_t> refcounts_before = file_bytes(path_);

  auto d = open(true);
  ASSERT_TRUE(d.ok()) << d.error().message();
  auto z = (*d)->write_zeroes(kCluster, kCluster);
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.error().message().find("marked corrupt"), std::string::npos) << z.error().message();
  d->reset();
  std::vector<uint8_t> after = file_bytes(path_);
  uint64_t target_cluster = target_ / kCluster;
  uint64_t entry = l.refblock + target_cluster * 2;  // 16-bit refcounts
  EXPECT_EQ(load_be16(&after[entry]), load_be16(&refcounts_before[entry])) << "the target's refcount changed";
  expect_marked_corrupt_and_untouched();
}

// The L1 entry points an L2 table at the target: opening for writing is refused.
TEST_P(Qcow2Overlap, L2TableInMetadataIsRefusedAtOpen) {
  Layout l = read_layout(path_);
  uint64_t target = GetParam().offset(l);
  // Aimed at L2 table 0, entry 1 makes two entries share it; otherwise entry 0 is redirected.
  poke64(path_, l.l1 + (target == l.l2[0] ? 8 : 0), target | kFlagCopied);
  crafted(std::string("l2_") + GetParam().name, target);

  auto d = open(true);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("overlaps"), std::string::npos) << d.error().message();
  EXPECT_NE(d.error().message().find("hostvisor disk check --repair"), std::string::npos) << d.error().message();
  expect_marked_corrupt_and_untouched();
  // A corrupt-marked image is refused for reading too (the header says so),
  // and `disk check --repair` is the way back: it clears the bit.
  auto report = check_qcow2(path_, false);
  ASSERT_TRUE(report.ok()) << report.error().message();
  EXPECT_FALSE(report->clean());
}

INSTANTIATE_TEST_SUITE_P(Targets, Qcow2Overlap, ::testing::ValuesIn(kTargets), target_name);

// A compressed cluster's extent starting inside the header: replacing it
// (a write copies the cluster elsewhere and drops the old reference) must
// not take a reference from the header's cluster.
TEST(Qcow2OverlapCompressed, CompressedClusterInHeaderIsRefused) {
  testing::ScratchDir dir;
  std::string path = dir.file("z.qcow2");
  ASSERT_NO_FATAL_FAILURE(create_image_with_data(path));
  Layout l = read_layout(path);
  poke64(path, l.l2[0] + 8, encode_compressed(200, 100, kClusterBits));
  save_fuzz_seed(path, "compressed_header");
  std::vector<uint8_t> before = file_bytes(path);
  auto d = open_qcow2(path, true);
  ASSERT_TRUE(d.ok()) << d.error().message();
  auto z = (*d)->write_zeroes(kCluster, kCluster);
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.error().message().find("the header"), std::string::npos) << z.error().message();
  d->reset();
  std::vector<uint8_t> after = file_bytes(path);
  EXPECT_NE(be64_at(after, 72) & kIncompatCorrupt, 0u);
  store_be64(&after[72], be64_at(after, 72) & ~kIncompatCorrupt);
  after.resize(before.size());
  // Only the corrupt bit differs: no refcount, table or data byte changed.
  EXPECT_EQ(after, before);
}

// Reading a crafted image harms nothing: a read-only open (e.g. `disk
// convert` copying the data out) still works.
TEST(Qcow2OverlapOpen, ReadOnlyOpenStillReads) {
  testing::ScratchDir dir;
  std::string path = dir.file("r.qcow2");
  ASSERT_NO_FATAL_FAILURE(create_image_with_data(path));
  Layout l = read_layout(path);
  poke64(path, l.l1, l.reftable | kFlagCopied);
  std::vector<uint8_t> before = file_bytes(path);
  auto d = open_qcow2(path, false);
  ASSERT_TRUE(d.ok()) << d.error().message();
  std::vector<uint8_t> buf(kDiskBytes);
  EXPECT_TRUE((*d)->read(0, buf.data(), buf.size()).ok());
  d->reset();
  EXPECT_EQ(file_bytes(path), before);
}

// An L1 entry past the end of the file is refused before it is used.
TEST(Qcow2OverlapOpen, L2TablePastEndOfFileIsRefused) {
  testing::ScratchDir dir;
  std::string path = dir.file("e.qcow2");
  ASSERT_NO_FATAL_FAILURE(create_image_with_data(path));
  Layout l = read_layout(path);
  poke64(path, l.l1, (uint64_t{1} << 40) | kFlagCopied);
  auto d = open_qcow2(path, false);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message().find("past the end of the file"), std::string::npos) << d.error().message();
}

TEST(MetadataMap, FindsRangesByCluster) {
  MetadataMap m(512);
  ASSERT_TRUE(m.assign({{0, 512, MetadataKind::kHeader},
                        {4096, 1000, MetadataKind::kL1Table},
                        {512, 512, MetadataKind::kRefcountTable}})
                  .ok());
  EXPECT_EQ(m.find(0, 1)->kind, MetadataKind::kHeader);
  EXPECT_EQ(m.find(1023, 1)->kind, MetadataKind::kRefcountTable);
  EXPECT_FALSE(m.find(1024, 3072).has_value());
  EXPECT_EQ(m.find(1024, 3073)->kind, MetadataKind::kL1Table);
  EXPECT_EQ(m.find(5119, 1)->kind, MetadataKind::kL1Table);  // 1000 bytes round out to two clusters
  EXPECT_FALSE(m.find(5120, 512).has_value());
  ASSERT_TRUE(m.add(8192, 512, MetadataKind::kL2Table).ok());
  EXPECT_EQ(m.find(8192, 512)->kind, MetadataKind::kL2Table);
  EXPECT_FALSE(m.add(8192, 512, MetadataKind::kRefcountBlock).ok());
  EXPECT_FALSE(m.add(4608, 1, MetadataKind::kRefcountBlock).ok());
  m.remove(8192);
  EXPECT_FALSE(m.find(8192, 512).has_value());
  auto clash = m.assign({{0, 512, MetadataKind::kHeader}, {0, 512, MetadataKind::kL2Table}});
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.error().message().find("overlaps"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor::block
