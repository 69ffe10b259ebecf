// The asynchronous path (BlockDevice::submit) of raw and qcow2 images: it
// never does I/O on the submitting thread nor waits for anything, and every
// request kind gives the same results and data as the synchronous calls.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "block/image_open.h"
#include "block/qcow2/check.h"
#include "block/qcow2/image.h"
#include "block/raw/image.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

constexpr uint64_t kDiskBytes = 1 << 20;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

void write_file(const std::string& path, const std::vector<uint8_t>& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
  std::fclose(f);
}

// The file's bytes as another reader sees them (not through the image).
std::vector<uint8_t> file_bytes(const std::string& path, uint64_t offset, size_t len) {
  std::vector<uint8_t> v(len);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, v.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
  ::close(fd);
  return v;
}

std::unique_ptr<BlockDevice> open_disk(const std::string& path, EngineKind engine, CacheMode cache) {
  OpenOptions o;
  o.writable = true;
  o.engine = engine;
  o.cache = cache;
  auto d = open_image(path, o);
  EXPECT_TRUE(d.ok()) << d.error().message();
  return d.ok() ? std::move(d).value() : nullptr;
}

void drain(BlockDevice& d) {
  for (int i = 0; i < 100000 && d.requests_in_flight() > 0; ++i) d.poll_completions(true);
  ASSERT_EQ(d.requests_in_flight(), 0u);
}

// Where two byte vectors first differ ("" when equal), for readable failures.
std::string first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return "byte " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
    }
  }
  return "";
}

// --- submit() only queues --------------------------------------------------

// With io_uring no hole punching, zeroing or write of a read-modify-write
// reaches the kernel before the next poll, so a file unchanged after submit()
// shows the submitting thread did none of the work (the synchronous fallbacks
// this replaced did it inside submit()).
struct QueuedCase {
  const char* name;
  CacheMode cache;
  BlockOp op;
  uint64_t offset;
  uint64_t length;
  bool unmap;
};

class RawSubmitQueues : public ::testing::TestWithParam<QueuedCase> {};

TEST_P(RawSubmitQueues, FileIsUntouchedUntilThePoll) {
  const QueuedCase& c = GetParam();
  testing::ScratchDir dir;
  std::string path = dir.file("disk.raw");
  auto data = random_bytes(kDiskBytes, 1);
  write_file(path, data);
  auto disk = open_disk(path, EngineKind::kIoUring, c.cache);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> payload(c.length, 0x5a);
  BlockRequest r{c.op, c.offset, {}, c.length, c.unmap};
  if (c.op == BlockOp::kWrite) r.iov = {{payload.data(), payload.size()}};
  std::optional<Result<void>> got;
  disk->submit(r, [&](Result<void> res) { got = std::move(res); });
  EXPECT_FALSE(got.has_value()) << "the completion ran inside submit()";
  EXPECT_EQ(disk->requests_in_flight(), 1u);
  EXPECT_EQ(file_bytes(path, 0, kDiskBytes), data) << "submit() changed the file itself";
  while (!got) disk->poll_completions(true);
  ASSERT_TRUE(got->ok()) << got->error().message();
  std::vector<uint8_t> expect = data;
  std::memset(expect.data() + c.offset, c.op == BlockOp::kWrite ? 0x5a : 0, c.length);
  EXPECT_EQ(first_difference(file_bytes(path, 0, kDiskBytes), expect), "");
}

INSTANTIATE_TEST_SUITE_P(
    Raw, RawSubmitQueues,
    ::testing::Values(QueuedCase{"WriteZeroes", CacheMode::kWriteback, BlockOp::kWriteZeroes, 4096, 65536, false},
                      QueuedCase{"WriteZeroesUnmap", CacheMode::kWriteback, BlockOp::kWriteZeroes, 4096, 65536, true},
                      QueuedCase{"WriteZeroesUnaligned", CacheMode::kNone, BlockOp::kWriteZeroes, 512, 9 * 512, false},
                      QueuedCase{"Discard", CacheMode::kWriteback, BlockOp::kDiscard, 8192, 16384, false},
                      QueuedCase{"UnalignedDirectWrite", CacheMode::kNone, BlockOp::kWrite, 1536, 3 * 512, false},
                      QueuedCase{"UnalignedDirectWriteAcrossBlocks", CacheMode::kNone, BlockOp::kWrite, 3584, 3 * 4096,
                                 false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(RawAsync, UnalignedDirectReadIsBouncedAsynchronously) {
  testing::ScratchDir dir;
  std::string path = dir.file("disk.raw");
  auto data = random_bytes(kDiskBytes, 2);
  write_file(path, data);
  auto disk = open_disk(path, EngineKind::kIoUring, CacheMode::kNone);
  ASSERT_TRUE(disk);
  // Odd offset, odd length, odd buffer address: nothing suits O_DIRECT.
  std::vector<uint8_t> buf(10000, 0xee);
  std::optional<Result<void>> got;
  disk->submit(BlockRequest{BlockOp::kRead, 4097, {{buf.data() + 1, 9000}}, 0},
               [&](Result<void> r) { got = std::move(r); });
  EXPECT_FALSE(got.has_value()) << "the bounced read completed inside submit()";
  EXPECT_EQ(buf[1], 0xee);
  while (!got) disk->poll_completions(true);
  ASSERT_TRUE(got->ok()) << got->error().message();
  EXPECT_EQ(0, std::memcmp(buf.data() + 1, data.data() + 4097, 9000));
  EXPECT_EQ(buf[0], 0xee);
  EXPECT_EQ(buf[9001], 0xee);
}

// Read-modify-write of one O_DIRECT block by several requests in flight at
// once: each rewrites the whole block, so without the range lock all but
// one guest write would be lost.
TEST(RawAsync, BouncedWritesToOneBlockInFlightTogetherAllLand) {
  for (EngineKind engine : {EngineKind::kIoUring, EngineKind::kThreadPool}) {
    testing::ScratchDir dir;
    std::string path = dir.file("disk.raw");
    auto data = random_bytes(kDiskBytes, 3);
    write_file(path, data);
    auto disk = open_disk(path, engine, CacheMode::kNone);
    ASSERT_TRUE(disk);
    std::vector<std::vector<uint8_t>> sectors;
    for (int i = 0; i < 8; ++i) sectors.emplace_back(512, static_cast<uint8_t>(0x10 + i));
    std::vector<uint8_t> whole(4096, 0x77);
    int done = 0;
    for (int i = 0; i < 8; ++i) {
      disk->submit(BlockRequest{BlockOp::kWrite, 8192 + 512ull * i, {{sectors[i].data(), 512}}, 0},
                   [&](Result<void> r) {
                     EXPECT_TRUE(r.ok());
                     ++done;
                   });
    }
    // An aligned write to the next block, and a write-zeroes over half of the one after.
    disk->submit(BlockRequest{BlockOp::kWrite, 12288, {{whole.data(), whole.size()}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++done;
    });
    disk->submit(BlockRequest{BlockOp::kWriteZeroes, 16384 + 1024, {}, 2048}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++done;
    });
    disk->submit(BlockRequest{BlockOp::kWrite, 16384 + 512, {{sectors[0].data(), 512}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++done;
    });
    drain(*disk);
    EXPECT_EQ(done, 11);
    std::vector<uint8_t> expect = data;
    for (int i = 0; i < 8; ++i) std::memset(expect.data() + 8192 + 512 * i, 0x10 + i, 512);
    std::memset(expect.data() + 12288, 0x77, 4096);
    std::memset(expect.data() + 16384 + 1024, 0, 2048);
    std::memset(expect.data() + 16384 + 512, 0x10, 512);
    EXPECT_EQ(first_difference(file_bytes(path, 0, kDiskBytes), expect), "") << engine_kind_name(engine);
  }
}

TEST(RawAsync, FlushCompletesAfterEveryEarlierRequest) {
  for (CacheMode cache : {CacheMode::kWriteback, CacheMode::kNone, CacheMode::kUnsafe}) {
    testing::ScratchDir dir;
    std::string path = dir.file("disk.raw");
    write_file(path, random_bytes(kDiskBytes, 4));
    auto disk = open_disk(path, EngineKind::kIoUring, cache);
    ASSERT_TRUE(disk);
    std::vector<uint8_t> block(65536, 0x42);
    std::vector<int> order;
    for (int i = 0; i < 6; ++i) {
      disk->submit(BlockRequest{BlockOp::kWrite, 65536ull * i, {{block.data(), block.size()}}, 0},
                   [&order, i](Result<void> r) {
                     EXPECT_TRUE(r.ok());
                     order.push_back(i);
                   });
    }
    disk->submit(BlockRequest{BlockOp::kWriteZeroes, 7 * 65536, {}, 65536}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      order.push_back(6);
    });
    disk->submit(BlockRequest{BlockOp::kFlush, 0, {}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      order.push_back(100);
    });
    // Requests after the flush are not held by it.
    disk->submit(BlockRequest{BlockOp::kRead, 0, {{block.data(), 4096}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      order.push_back(7);
    });
    drain(*disk);
    ASSERT_EQ(order.size(), 9u);
    auto flush_at = std::find(order.begin(), order.end(), 100) - order.begin();
    for (int i = 0; i <= 6; ++i) {
      EXPECT_LT(std::find(order.begin(), order.end(), i) - order.begin(), flush_at) << "request " << i;
    }
  }
}

TEST(RawAsync, ErrorsAreReportedThroughTheCompletion) {
  testing::ScratchDir dir;
  std::string path = dir.file("disk.raw");
  write_file(path, random_bytes(kDiskBytes, 5));
  auto disk = open_disk(path, EngineKind::kIoUring, CacheMode::kWriteback);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> buf(4096);
  int calls = 0;
  disk->submit(BlockRequest{BlockOp::kRead, kDiskBytes - 512, {{buf.data(), 4096}}, 0}, [&](Result<void> r) {
    EXPECT_FALSE(r.ok());
    ++calls;
  });
  disk->submit(BlockRequest{BlockOp::kWriteZeroes, kDiskBytes, {}, 1}, [&](Result<void> r) {
    EXPECT_FALSE(r.ok());
    ++calls;
  });
  EXPECT_EQ(calls, 0) << "completions must run in poll_completions(), not in submit()";
  drain(*disk);
  EXPECT_EQ(calls, 2);
}

// --- same results and data as the synchronous path ---------------------------

struct EquivalenceCase {
  const char* name;
  bool qcow2;
  EngineKind engine;
  CacheMode cache;
};

class AsyncMatchesSync : public ::testing::TestWithParam<EquivalenceCase> {};

// Random rounds of non-overlapping requests of every kind (overlapping ones
// in flight together have no defined order), applied synchronously to one
// image and asynchronously, all in flight at once, to an identical one.
TEST_P(AsyncMatchesSync, EveryRequestKind) {
  const EquivalenceCase& c = GetParam();
  testing::ScratchDir dir;
  std::string a_path = dir.file("a"), b_path = dir.file("b");
  auto data = random_bytes(kDiskBytes, 6);
  if (c.qcow2) {
    Qcow2CreateOptions o;
    o.size = kDiskBytes;
    o.cluster_bits = 12;  // many clusters (and L2 entries) in a small disk
    ASSERT_TRUE(Qcow2Image::create(a_path, o).ok());
    ASSERT_TRUE(Qcow2Image::create(b_path, o).ok());
    // Half the disk allocated, half left to read as zeros or be allocated by the test.
    for (const auto& p : {a_path, b_path}) {
      auto d = open_disk(p, EngineKind::kThreadPool, CacheMode::kWriteback);
      ASSERT_TRUE(d);
      ASSERT_TRUE(d->write(0, data.data(), kDiskBytes / 2).ok());
    }
  } else {
    write_file(a_path, data);
    write_file(b_path, data);
  }
  auto a = open_disk(a_path, c.engine, c.cache);
  auto b = open_disk(b_path, c.engine, c.cache);
  ASSERT_TRUE(a && b);
  std::mt19937 rng(7);
  auto pick = [&](uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng); };
  for (int round = 0; round < 40; ++round) {
    // Cut the disk into slots so the round's requests never overlap.
    constexpr uint64_t kSlots = 16, kSlot = kDiskBytes / kSlots;
    struct Planned {
      BlockRequest request;
      std::vector<uint8_t> buf_a, buf_b;  // write payload, or read destinations
      size_t misalign = 0;
    };
    std::vector<Planned> plan;
    for (uint64_t s = 0; s < kSlots; ++s) {
      if (pick(0, 3) == 0) continue;
      Planned p;
      BlockOp op = static_cast<BlockOp>(pick(0, 4));
      // Sector-granular mostly, byte-granular sometimes (the CLI's and tests' use).
      uint64_t unit = pick(0, 3) == 0 ? 1 : 512;
      uint64_t off = s * kSlot + pick(0, kSlot / 2 / unit) * unit;
      uint64_t len = pick(1, (s * kSlot + kSlot - off) / unit) * unit;
      p.request = BlockRequest{op, off, {}, 0, pick(0, 1) == 1};
      if (op == BlockOp::kRead || op == BlockOp::kWrite) {
        p.misalign = pick(0, 1) == 1 ? pick(1, 511) : 0;
        p.buf_a.assign(len + p.misalign, 0xcc);
        p.buf_b.assign(len + p.misalign, 0xdd);
        if (op == BlockOp::kWrite) {
          auto payload = random_bytes(len, static_cast<uint32_t>(round * 100 + s));
          std::memcpy(p.buf_a.data() + p.misalign, payload.data(), len);
          std::memcpy(p.buf_b.data() + p.misalign, payload.data(), len);
        }
      } else if (op != BlockOp::kFlush) {
        p.request.length = len;
      }
      plan.push_back(std::move(p));
    }
    std::vector<std::optional<Result<void>>> results(plan.size());
    for (size_t i = 0; i < plan.size(); ++i) {
      Planned& p = plan[i];
      BlockRequest r = p.request;
      size_t len = p.buf_b.size() - p.misalign;
      if (!p.buf_b.empty()) r.iov = {{p.buf_b.data() + p.misalign, len}};
      // Split some transfers over two buffers.
      if (len > 1024 && (i & 1))
        r.iov = {{p.buf_b.data() + p.misalign, 512}, {p.buf_b.data() + p.misalign + 512, len - 512}};
      b->submit(std::move(r), [&results, i](Result<void> res) { results[i] = std::move(res); });
    }
    for (auto& p : plan) {
      const BlockRequest& r = p.request;
      Result<void> sync = ok();
      size_t len = p.buf_a.size() - p.misalign;
      switch (r.op) {
        case BlockOp::kRead: sync = a->read(r.offset, p.buf_a.data() + p.misalign, len); break;
        case BlockOp::kWrite: sync = a->write(r.offset, p.buf_a.data() + p.misalign, len); break;
        case BlockOp::kFlush: sync = a->flush(); break;
        case BlockOp::kDiscard: sync = a->discard(r.offset, r.length); break;
        case BlockOp::kWriteZeroes: sync = a->write_zeroes(r.offset, r.length); break;
      }
      ASSERT_TRUE(sync.ok()) << sync.error().message();
    }
    drain(*b);
    for (size_t i = 0; i < plan.size(); ++i) {
      ASSERT_TRUE(results[i].has_value()) << "request " << i << " never completed";
      ASSERT_TRUE(results[i]->ok()) << results[i]->error().message();
      if (plan[i].request.op == BlockOp::kRead) {
        size_t m = plan[i].misalign, len = plan[i].buf_a.size() - m;
        ASSERT_EQ(0, std::memcmp(plan[i].buf_a.data() + m, plan[i].buf_b.data() + m, len))
            << "round " << round << ": read at " << plan[i].request.offset << " of " << len << " differs";
      }
    }
    // Discard may leave data or zeros; the rest must match exactly. Compare
    // outside the discarded ranges only.
    std::vector<uint8_t> ca(kDiskBytes), cb(kDiskBytes);
    ASSERT_TRUE(a->read(0, ca.data(), kDiskBytes).ok());
    ASSERT_TRUE(b->read(0, cb.data(), kDiskBytes).ok());
    for (const auto& p : plan) {
      if (p.request.op != BlockOp::kDiscard) continue;
      std::memset(ca.data() + p.request.offset, 0, p.request.length);
      std::memset(cb.data() + p.request.offset, 0, p.request.length);
      // Make both agree for later rounds too.
      ASSERT_TRUE(a->write_zeroes(p.request.offset, p.request.length).ok());
      ASSERT_TRUE(b->write_zeroes(p.request.offset, p.request.length).ok());
    }
    ASSERT_EQ(first_difference(ca, cb), "") << "round " << round;
  }
  if (c.qcow2) {
    a.reset();
    b.reset();
    for (const auto& p : {a_path, b_path}) {
      auto r = check_qcow2(p, false);
      ASSERT_TRUE(r.ok()) << r.error().message();
      EXPECT_EQ(r->corruptions, 0u);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Images, AsyncMatchesSync,
    ::testing::Values(EquivalenceCase{"RawUringWriteback", false, EngineKind::kIoUring, CacheMode::kWriteback},
                      EquivalenceCase{"RawUringDirect", false, EngineKind::kIoUring, CacheMode::kNone},
                      EquivalenceCase{"RawThreadsWriteback", false, EngineKind::kThreadPool, CacheMode::kWriteback},
                      EquivalenceCase{"RawThreadsDirect", false, EngineKind::kThreadPool, CacheMode::kNone},
                      EquivalenceCase{"Qcow2Writeback", true, EngineKind::kAuto, CacheMode::kWriteback},
                      EquivalenceCase{"Qcow2Direct", true, EngineKind::kAuto, CacheMode::kNone}),
    [](const auto& info) { return std::string(info.param.name); });

// --- qcow2: planning never waits ---------------------------------------------

// A backing disk whose reads block until the test opens the gate.
class GatedBacking : public BlockDevice {
 public:
  explicit GatedBacking(uint64_t size) : size_(size) {}
  const char* format_name() const override { return "gated"; }
  uint64_t virtual_size() const override { return size_; }
  bool read_only() const override { return true; }
  Result<void> readv(uint64_t, std::span<const iovec> iov) override {
    std::unique_lock lock(mutex_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
    for (const auto& v : iov) std::memset(v.iov_base, 0xbb, v.iov_len);
    return ok();
  }
  Result<void> writev(uint64_t, std::span<const iovec>) override { return Error(ErrorCode::kIo, "read-only"); }
  Result<void> flush() override { return ok(); }
  Result<void> discard(uint64_t, uint64_t) override { return ok(); }

  void wait_entered() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return entered_; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  uint64_t size_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool entered_ = false, open_ = false;
};

// A synchronous read stuck in the backing file holds the image lock; the
// submitting thread must neither wait for that lock nor read an uncached L2
// table itself: such requests go to the worker.
TEST(Qcow2Async, SubmitNeverWaitsForTheImageLockOrMetadata) {
  testing::ScratchDir dir;
  std::string path = dir.file("overlay.qcow2");
  constexpr uint64_t kSize = 1ull << 30;  // two L2 tables with 64 KiB clusters
  constexpr uint64_t kFar = 600ull << 20;
  Qcow2CreateOptions o;
  o.size = kSize;
  ASSERT_TRUE(Qcow2Image::create(path, o).ok());
  std::vector<uint8_t> near(65536, 0x11), far(65536, 0x22);
  {
    auto d = open_disk(path, EngineKind::kAuto, CacheMode::kWriteback);
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->write(0, near.data(), near.size()).ok());
    ASSERT_TRUE(d->write(kFar, far.data(), far.size()).ok());
  }
  HostFileOptions fo;
  fo.writable = true;
  auto file = HostFile::open(path, fo);
  ASSERT_TRUE(file.ok());
  auto img = Qcow2Image::open(std::move(file).value());
  ASSERT_TRUE(img.ok()) << img.error().message();
  Qcow2Image& q = **img;
  auto gate = std::make_unique<GatedBacking>(kSize);
  GatedBacking* g = gate.get();
  q.set_backing(std::move(gate));
  std::vector<uint8_t> probe(512);
  ASSERT_TRUE(q.read(0, probe.data(), probe.size()).ok());  // caches the first L2 table only

  std::vector<uint8_t> stuck(65536);
  std::thread holder([&] { EXPECT_TRUE(q.read(5 * 65536, stuck.data(), stuck.size()).ok()); });
  g->wait_entered();
  std::vector<uint8_t> got_near(65536), got_far(65536);
  int done = 0;
  auto submitted = std::async(std::launch::async, [&] {
    q.submit(BlockRequest{BlockOp::kRead, 0, {{got_near.data(), got_near.size()}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++done;
    });
    q.submit(BlockRequest{BlockOp::kRead, kFar, {{got_far.data(), got_far.size()}}, 0}, [&](Result<void> r) {
      EXPECT_TRUE(r.ok());
      ++done;
    });
  });
  bool returned = submitted.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  g->open();
  holder.join();
  submitted.wait();
  EXPECT_TRUE(returned) << "submit() waited for the image lock held by a synchronous reader";
  drain(q);
  EXPECT_EQ(done, 2);
  EXPECT_EQ(got_near, near);
  EXPECT_EQ(got_far, far);
  EXPECT_EQ(stuck, std::vector<uint8_t>(65536, 0xbb));
}

// A flush on qcow2 completes after the direct-path writes submitted before it.
TEST(Qcow2Async, FlushCompletesAfterEarlierDirectWrites) {
  testing::ScratchDir dir;
  std::string path = dir.file("disk.qcow2");
  Qcow2CreateOptions o;
  o.size = 8 << 20;
  ASSERT_TRUE(Qcow2Image::create(path, o).ok());
  auto d = open_disk(path, EngineKind::kAuto, CacheMode::kWriteback);
  ASSERT_TRUE(d);
  std::vector<uint8_t> block(8 << 20, 0x33);
  ASSERT_TRUE(d->write(0, block.data(), block.size()).ok());  // allocated: later writes go direct
  std::vector<int> order;
  for (int i = 0; i < 8; ++i) {
    d->submit(BlockRequest{BlockOp::kWrite, (1ull << 20) * i, {{block.data(), 1 << 20}}, 0},
              [&order, i](Result<void> r) {
                EXPECT_TRUE(r.ok());
                order.push_back(i);
              });
  }
  d->submit(BlockRequest{BlockOp::kFlush, 0, {}, 0}, [&](Result<void> r) {
    EXPECT_TRUE(r.ok());
    order.push_back(100);
  });
  drain(*d);
  ASSERT_EQ(order.size(), 9u);
  EXPECT_EQ(order.back(), 100);
}

// A guest must not turn its raw disk into a qcow2 image naming a host file as
// its backing file: with a probed format, a qcow2 header at offset 0 is refused
// on both paths; with format=raw it is the guest's data like any other.
TEST(RawProbed, QcowHeaderWriteToSectorZeroIsRefused) {
  testing::ScratchDir dir;
  const std::string path = dir.file("disk.raw");
  write_file(path, std::vector<uint8_t>(kDiskBytes, 0));
  std::vector<uint8_t> header(512, 0);
  const uint8_t magic[4] = {'Q', 'F', 'I', 0xfb};
  std::memcpy(header.data(), magic, 4);
  const iovec iov{header.data(), header.size()};

  auto probed = open_disk(path, EngineKind::kThreadPool, CacheMode::kWriteback);
  ASSERT_TRUE(probed);
  auto sync = probed->writev(0, std::span(&iov, 1));
  ASSERT_FALSE(sync.ok());
  EXPECT_NE(sync.error().message().find("format=raw"), std::string::npos) << sync.error().message();
  Result<void> async = ok();
  probed->submit(BlockRequest{BlockOp::kWrite, 0, {iov}, 0}, [&](Result<void> r) { async = std::move(r); });
  drain(*probed);
  EXPECT_FALSE(async.ok());
  EXPECT_TRUE(probed->writev(512, std::span(&iov, 1)).ok()) << "only the start of the disk is guarded";
  probed.reset();
  EXPECT_EQ(file_bytes(path, 0, 4), std::vector<uint8_t>(4, 0));

  OpenOptions o;
  o.writable = true;
  o.format = ImageFormat::kRaw;
  auto explicit_raw = open_image(path, o);
  ASSERT_TRUE(explicit_raw.ok());
  EXPECT_TRUE((*explicit_raw)->writev(0, std::span(&iov, 1)).ok());
  explicit_raw->reset();
  EXPECT_EQ(file_bytes(path, 0, 4), std::vector<uint8_t>(magic, magic + 4));
}

}  // namespace
}  // namespace hostvisor::block
