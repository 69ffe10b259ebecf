#include "block/qcow2/image.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "block/image_open.h"
#include "block/qcow2/check.h"
#include "block/raw/image.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

std::unique_ptr<BlockDevice> open_rw(const std::string& path, EngineKind engine = EngineKind::kAuto) {
  OpenOptions o;
  o.writable = true;
  o.engine = engine;
  auto d = open_image(path, o);
  EXPECT_TRUE(d.ok()) << d.error().message();
  return d.ok() ? std::move(d).value() : nullptr;
}

Qcow2Image* as_qcow2(BlockDevice* d) { return dynamic_cast<Qcow2Image*>(d); }

void expect_clean(const std::string& path) {
  auto r = check_qcow2(path, false);
  ASSERT_TRUE(r.ok()) << r.error().message();
  std::string msgs;
  for (const auto& m : r->messages) msgs += m + "\n";
  EXPECT_EQ(r->corruptions, 0u) << msgs;
  EXPECT_EQ(r->leaks, 0u) << msgs;
}

void expect_contents(BlockDevice& d, const std::vector<uint8_t>& ref) {
  std::vector<uint8_t> back(ref.size());
  ASSERT_TRUE(d.read(0, back.data(), back.size()).ok());
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(back[i], ref[i]) << "first difference at byte " << i;
}

// Random writes, zeroes and discards of random sizes, mirrored in a reference buffer.
void random_workload(BlockDevice& d, std::vector<uint8_t>& ref, uint32_t seed, int ops, bool has_backing) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < ops; ++i) {
    uint64_t len = 1 + rng() % (rng() % 4 == 0 ? 300000 : 9000);
    uint64_t off = rng() % (ref.size() - len);
    int kind = static_cast<int>(rng() % 10);
    if (kind < 7) {
      std::vector<uint8_t> buf(len);
      for (auto& b : buf) b = static_cast<uint8_t>(rng());
      // Split into a scatter-gather list of two pieces sometimes.
      if (len > 2 && kind == 0) {
        iovec v[2] = {{buf.data(), len / 2}, {buf.data() + len / 2, len - len / 2}};
        ASSERT_TRUE(d.writev(off, v).ok());
      } else {
        ASSERT_TRUE(d.write(off, buf.data(), len).ok());
      }
      std::memcpy(&ref[off], buf.data(), len);
    } else if (kind < 9) {
      ASSERT_TRUE(d.write_zeroes(off, len).ok());
      std::memset(&ref[off], 0, len);
    } else {
      // Discard may leave data or zeros; write zeros after it so the model stays exact.
      ASSERT_TRUE(d.discard(off, len).ok());
      ASSERT_TRUE(d.write_zeroes(off, len).ok());
      std::memset(&ref[off], 0, len);
    }
    if (i % 50 == 49) ASSERT_TRUE(d.flush().ok());
  }
  (void)has_backing;
}

struct Geometry {
  uint32_t cluster_bits;
  uint32_t refcount_order;
};

class Qcow2RandomTest : public ::testing::TestWithParam<Geometry> {};

TEST_P(Qcow2RandomTest, RandomWritesReadBackAndCheckClean) {
  testing::ScratchDir dir;
  std::string path = dir.file("t.qcow2");
  Qcow2CreateOptions co;
  co.size = 24 << 20;
  co.cluster_bits = GetParam().cluster_bits;
  co.refcount_order = GetParam().refcount_order;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  std::vector<uint8_t> ref(co.size, 0);
  {
    auto d = open_rw(path);
    ASSERT_TRUE(d);
    random_workload(*d, ref, 1234 + co.cluster_bits, 300, false);
    expect_contents(*d, ref);
  }
  expect_clean(path);
  auto d = open_rw(path);
  ASSERT_TRUE(d);
  expect_contents(*d, ref);
}

INSTANTIATE_TEST_SUITE_P(Geometries, Qcow2RandomTest,
                         ::testing::Values(Geometry{16, 4}, Geometry{9, 4}, Geometry{12, 0}, Geometry{12, 6},
                                           Geometry{21, 3}),
                         [](const auto& info) {
                           return "cluster" + std::to_string(1u << info.param.cluster_bits) + "_refbits" +
                                  std::to_string(1u << info.param.refcount_order);
                         });

TEST(Qcow2Image, BackingChainReadsThroughAndCopiesOnWrite) {
  testing::ScratchDir dir;
  std::vector<uint8_t> ref(8 << 20);
  ASSERT_TRUE(RawImage::create(dir.file("base.raw"), ref.size()).ok());
  {
    auto base = open_rw(dir.file("base.raw"));
    std::mt19937 rng(7);
    for (auto& b : ref) b = static_cast<uint8_t>(rng());
    ASSERT_TRUE(base->write(0, ref.data(), ref.size()).ok());
  }
  Qcow2CreateOptions co;
  co.size = ref.size() + (1 << 20);  // larger than its backing: the tail reads as zeros
  co.backing_file = "base.raw";      // relative to the overlay's directory
  co.backing_format = "raw";
  ASSERT_TRUE(Qcow2Image::create(dir.file("mid.qcow2"), co).ok());
  co.backing_file = dir.file("mid.qcow2");  // absolute
  co.backing_format = "";
  ASSERT_TRUE(Qcow2Image::create(dir.file("top.qcow2"), co).ok());
  ref.resize(co.size, 0);
  {
    auto mid = open_rw(dir.file("mid.qcow2"));
    std::vector<uint8_t> buf(100000, 0x42);
    ASSERT_TRUE(mid->write(12345, buf.data(), buf.size()).ok());
    std::memcpy(&ref[12345], buf.data(), buf.size());
  }
  auto top = open_rw(dir.file("top.qcow2"));
  ASSERT_TRUE(top);
  expect_contents(*top, ref);
  random_workload(*top, ref, 99, 200, true);
  expect_contents(*top, ref);
  top.reset();
  expect_clean(dir.file("top.qcow2"));
  expect_clean(dir.file("mid.qcow2"));
  top = open_rw(dir.file("top.qcow2"));
  expect_contents(*top, ref);
}

TEST(Qcow2Image, BackingLoopAndMissingBackingAreReported) {
  testing::ScratchDir dir;
  Qcow2CreateOptions co;
  co.size = 1 << 20;
  co.backing_file = "b.qcow2";
  ASSERT_TRUE(Qcow2Image::create(dir.file("a.qcow2"), co).ok());
  auto missing = open_image(dir.file("a.qcow2"), OpenOptions{});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("is missing"), std::string::npos) << missing.error().message();
  co.backing_file = "a.qcow2";
  ASSERT_TRUE(Qcow2Image::create(dir.file("b.qcow2"), co).ok());
  auto loop = open_image(dir.file("a.qcow2"), OpenOptions{});
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.error().message().find("loop"), std::string::npos) << loop.error().message();
}

TEST(Qcow2Image, SnapshotsCreateApplyDeleteKeepDataAndRefcounts) {
  testing::ScratchDir dir;
  std::string path = dir.file("s.qcow2");
  Qcow2CreateOptions co;
  co.size = 16 << 20;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  std::vector<uint8_t> ref(co.size, 0);
  auto d = open_rw(path);
  random_workload(*d, ref, 5, 100, false);
  std::vector<uint8_t> at_first = ref;
  ASSERT_TRUE(as_qcow2(d.get())->create_snapshot("first").ok());
  EXPECT_FALSE(as_qcow2(d.get())->create_snapshot("first").ok());  // duplicate name
  random_workload(*d, ref, 6, 100, false);
  expect_contents(*d, ref);
  std::vector<uint8_t> at_second = ref;
  ASSERT_TRUE(as_qcow2(d.get())->create_snapshot("second").ok());
  random_workload(*d, ref, 7, 50, false);
  ASSERT_TRUE(d->flush().ok());
  d.reset();
  expect_clean(path);

  d = open_rw(path);
  auto snaps = as_qcow2(d.get())->snapshots();
  ASSERT_EQ(snaps.size(), 2u);
  EXPECT_EQ(snaps[0].name, "first");
  EXPECT_EQ(snaps[1].id, "2");
  ASSERT_TRUE(as_qcow2(d.get())->apply_snapshot("first").ok());
  expect_contents(*d, at_first);
  d.reset();
  expect_clean(path);
  d = open_rw(path);
  ASSERT_TRUE(as_qcow2(d.get())->apply_snapshot("2").ok());
  expect_contents(*d, at_second);
  ASSERT_TRUE(as_qcow2(d.get())->delete_snapshot("first").ok());
  EXPECT_FALSE(as_qcow2(d.get())->delete_snapshot("first").ok());
  expect_contents(*d, at_second);
  random_workload(*d, at_second, 8, 50, false);
  ASSERT_TRUE(as_qcow2(d.get())->delete_snapshot("second").ok());
  expect_contents(*d, at_second);
  d.reset();
  expect_clean(path);
}

TEST(Qcow2Image, CompressedClustersAndResize) {
  testing::ScratchDir dir;
  std::string path = dir.file("c.qcow2");
  Qcow2CreateOptions co;
  co.size = 4 << 20;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  std::vector<uint8_t> ref(co.size, 0);
  auto d = open_rw(path);
  auto* q = as_qcow2(d.get());
  std::vector<uint8_t> cluster(65536);
  for (uint64_t c = 0; c < 20; ++c) {
    for (size_t i = 0; i < cluster.size(); ++i) cluster[i] = static_cast<uint8_t>((i / 100) * c);
    ASSERT_TRUE(q->write_compressed(c * 65536, cluster.data()).ok());
    std::memcpy(&ref[c * 65536], cluster.data(), cluster.size());
  }
  expect_contents(*d, ref);
  // Overwriting part of a compressed cluster decompresses it into a normal one.
  std::vector<uint8_t> patch(1000, 0xee);
  ASSERT_TRUE(d->write(3 * 65536 + 500, patch.data(), patch.size()).ok());
  std::memcpy(&ref[3 * 65536 + 500], patch.data(), patch.size());
  expect_contents(*d, ref);
  // Growing past the L1 table's coverage moves the L1 table.
  ASSERT_TRUE(q->resize(uint64_t{3} << 30).ok());
  EXPECT_EQ(d->virtual_size(), uint64_t{3} << 30);
  ASSERT_TRUE(d->write((uint64_t{3} << 30) - 4096, patch.data(), patch.size()).ok());
  EXPECT_FALSE(q->resize(1 << 20).ok());
  d.reset();
  expect_clean(path);
  d = open_rw(path);
  ref.resize(4 << 20);
  std::vector<uint8_t> back(ref.size());
  ASSERT_TRUE(d->read(0, back.data(), back.size()).ok());
  EXPECT_EQ(back, ref);
  std::vector<uint8_t> end(1000);
  ASSERT_TRUE(d->read((uint64_t{3} << 30) - 4096, end.data(), end.size()).ok());
  EXPECT_EQ(end, patch);
}

TEST(Qcow2Image, CacheNoneAndThreadPoolEngineWork) {
  testing::ScratchDir dir;
  std::string path = dir.file("n.qcow2");
  Qcow2CreateOptions co;
  co.size = 8 << 20;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  std::vector<uint8_t> ref(co.size, 0);
  OpenOptions o;
  o.writable = true;
  o.cache = CacheMode::kNone;
  o.engine = EngineKind::kThreadPool;
  auto d = open_image(path, o);
  ASSERT_TRUE(d.ok()) << d.error().message();
  random_workload(**d, ref, 77, 100, false);
  expect_contents(**d, ref);
  d = Error(ErrorCode::kInternal, "closed");
  expect_clean(path);
}

TEST(Qcow2Image, AsyncSubmitCompletesInOrderOfIssue) {
  testing::ScratchDir dir;
  std::string path = dir.file("a.qcow2");
  Qcow2CreateOptions co;
  co.size = 4 << 20;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  auto d = open_rw(path);
  std::vector<uint8_t> data(8192, 0x3c), back(8192);
  int completed = 0;
  BlockRequest w{BlockOp::kWrite, 4096, {{data.data(), data.size()}}, 0};
  d->submit(w, [&](Result<void> r) {
    EXPECT_TRUE(r.ok());
    ++completed;
  });
  d->submit(BlockRequest{BlockOp::kFlush, 0, {}, 0}, [&](Result<void> r) {
    EXPECT_TRUE(r.ok());
    ++completed;
  });
  BlockRequest rd{BlockOp::kRead, 4096, {{back.data(), back.size()}}, 0};
  d->submit(rd, [&](Result<void> r) {
    EXPECT_TRUE(r.ok());
    ++completed;
  });
  BlockRequest bad{BlockOp::kRead, co.size - 10, {{back.data(), 100}}, 0};
  d->submit(bad, [&](Result<void> r) {
    EXPECT_FALSE(r.ok());
    ++completed;
  });
  while (completed < 4) d->poll_completions(true);
  EXPECT_EQ(back, data);
}

TEST(Qcow2Image, ManyAsyncRequestsInFlightMatchTheModel) {
  testing::ScratchDir dir;
  std::string path = dir.file("m.qcow2");
  Qcow2CreateOptions co;
  co.size = 8 << 20;
  ASSERT_TRUE(Qcow2Image::create(path, co).ok());
  std::vector<uint8_t> ref(co.size, 0);
  for (CacheMode cache : {CacheMode::kWriteback, CacheMode::kNone}) {
    OpenOptions o;
    o.writable = true;
    o.cache = cache;
    auto d = open_image(path, o);
    ASSERT_TRUE(d.ok());
    // Half the disk allocated first, so requests mix the direct path (allocated
    // clusters, unallocated reads) with the worker (allocating writes).
    if (cache == CacheMode::kWriteback) {
      std::vector<uint8_t> fill(co.size / 2, 0x11);
      ASSERT_TRUE((*d)->write(0, fill.data(), fill.size()).ok());
      std::memset(ref.data(), 0x11, fill.size());
    }
    std::mt19937 rng(static_cast<unsigned>(cache) + 3);
    constexpr int kSlots = 64;
    std::vector<AlignedBuffer> bufs;
    for (int i = 0; i < kSlots; ++i) bufs.emplace_back(65536);
    int completed = 0;
    // Each slot owns a distinct 64 KiB region: no two requests in flight overlap.
    for (int round = 0; round < 4; ++round) {
      for (int i = 0; i < kSlots; ++i) {
        uint64_t region = (static_cast<uint64_t>(i) * 2 + (round & 1)) * 65536;
        uint64_t off = region + (rng() % 8) * 4096;
        uint64_t len = 4096 * (1 + rng() % (16 - (off - region) / 4096));
        std::memset(bufs[i].data(), round * 64 + i, len);
        std::memcpy(&ref[off], bufs[i].data(), len);
        (*d)->submit(BlockRequest{BlockOp::kWrite, off, {{bufs[i].data(), len}}, 0}, [&](Result<void> r) {
          EXPECT_TRUE(r.ok()) << r.error().message();
          ++completed;
        });
      }
      while ((*d)->requests_in_flight() > 0) (*d)->poll_completions(true);
      for (int i = 0; i < kSlots; ++i) {
        uint64_t off = (static_cast<uint64_t>(i) * 2 + ((round + 1) & 1)) * 65536;
        (*d)->submit(BlockRequest{BlockOp::kRead, off, {{bufs[i].data(), 65536}}, 0}, [&, i, off](Result<void> r) {
          EXPECT_TRUE(r.ok());
          EXPECT_EQ(std::memcmp(bufs[i].data(), &ref[off], 65536), 0) << "read at " << off;
          ++completed;
        });
      }
      while ((*d)->requests_in_flight() > 0) (*d)->poll_completions(true);
    }
    EXPECT_EQ(completed, 4 * 2 * kSlots);
    expect_contents(**d, ref);
  }
  expect_clean(path);
}

// Writes to clusters that need allocating go straight to the engine and are
// linked into the L2 table when their data is written. Several such writes to
// one cluster in flight together must all land (each would otherwise
// allocate the cluster afresh and the last link would drop the others).
TEST(Qcow2Image, DirectAllocatingWritesToOneClusterAllLand) {
  for (CacheMode cache : {CacheMode::kWriteback, CacheMode::kNone}) {
    testing::ScratchDir dir;
    std::string path = dir.file("d.qcow2");
    Qcow2CreateOptions co;
    co.size = 4 << 20;
    ASSERT_TRUE(Qcow2Image::create(path, co).ok());
    OpenOptions o;
    o.writable = true;
    o.cache = cache;
    auto d = open_image(path, o);
    ASSERT_TRUE(d.ok());
    std::vector<uint8_t> ref(co.size, 0);
    // The L2 table exists and is cached, so the writes below can go direct.
    std::vector<uint8_t> first(4096, 0x77);
    ASSERT_TRUE((*d)->write(0, first.data(), first.size()).ok());
    std::memcpy(ref.data(), first.data(), first.size());
    constexpr int kWrites = 16;
    std::vector<AlignedBuffer> bufs;
    int completed = 0;
    for (int i = 0; i < kWrites; ++i) {
      bufs.emplace_back(4096);
      std::memset(bufs.back().data(), 0x80 + i, 4096);
      // Clusters 1 and 2, every 4 KiB slot, interleaved.
      uint64_t off = 65536 * (1 + i % 2) + 4096 * static_cast<uint64_t>(i / 2);
      std::memcpy(&ref[off], bufs.back().data(), 4096);
      (*d)->submit(BlockRequest{BlockOp::kWrite, off, {{bufs.back().data(), 4096}}, 0}, [&](Result<void> r) {
        EXPECT_TRUE(r.ok()) << r.error().message();
        ++completed;
      });
    }
    while ((*d)->requests_in_flight() > 0) (*d)->poll_completions(true);
    EXPECT_EQ(completed, kWrites);
    expect_contents(**d, ref);
    ASSERT_TRUE((*d)->flush().ok());
    d->reset();
    expect_clean(path);
    auto again = open_image(path, OpenOptions{});
    ASSERT_TRUE(again.ok());
    expect_contents(**again, ref);
  }
}

TEST(RawImage, AsyncPathThroughTheEngine) {
  testing::ScratchDir dir;
  std::string path = dir.file("r.raw");
  ASSERT_TRUE(RawImage::create(path, 1 << 20).ok());
  for (CacheMode cache : {CacheMode::kWriteback, CacheMode::kNone}) {
    OpenOptions o;
    o.writable = true;
    o.cache = cache;
    auto d = open_image(path, o);
    ASSERT_TRUE(d.ok()) << d.error().message();
    AlignedBuffer data(65536), back(65536);
    std::memset(data.data(), 0x77 + static_cast<int>(cache), data.size());
    int completed = 0;
    (*d)->submit(BlockRequest{BlockOp::kWrite, 65536, {{data.data(), data.size()}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++completed;
    });
    while (completed < 1) (*d)->poll_completions(true);
    // Unaligned for O_DIRECT: bounced, still completed through the same path.
    std::vector<uint8_t> odd(100);
    (*d)->submit(BlockRequest{BlockOp::kRead, 65536 + 3, {{odd.data(), odd.size()}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++completed;
    });
    (*d)->submit(BlockRequest{BlockOp::kFlush, 0, {}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++completed;
    });
    (*d)->submit(BlockRequest{BlockOp::kRead, 65536, {{back.data(), back.size()}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++completed;
    });
    while (completed < 4) (*d)->poll_completions(true);
    EXPECT_EQ(std::memcmp(data.data(), back.data(), data.size()), 0);
    EXPECT_EQ(odd[0], data.data()[0]);
  }
}

}  // namespace
}  // namespace hostvisor::block
