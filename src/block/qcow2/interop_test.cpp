// Interoperability with QEMU's tools, both ways: images hostvisor writes pass
// `qemu-img check` and compare equal to a raw reference; images qemu-img and
// qemu-io write (compressed, with snapshots, with backing chains) read back
// through hostvisor exactly as qemu-img reads them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <vector>

#include "block/image_copy.h"
#include "block/image_open.h"
#include "block/qcow2/image.h"
#include "block/raw/image.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

using testing::run_command;
using testing::ScratchDir;

bool have_qemu_img() { return run_command("qemu-img --version") == 0; }

#define REQUIRE_QEMU_IMG() \
  if (!have_qemu_img()) GTEST_FAIL() << "qemu-img is required (install qemu-utils: scripts/setup-host.sh)"

void qemu_check_clean(const std::string& path) {
  std::string out;
  int rc = run_command("qemu-img check '" + path + "'", &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("No errors were found"), std::string::npos) << out;
}

void qemu_compare(const std::string& a, const std::string& b) {
  std::string out;
  EXPECT_EQ(run_command("qemu-img compare '" + a + "' '" + b + "'", &out), 0) << out;
}

std::vector<uint8_t> read_all(BlockDevice& d) {
  std::vector<uint8_t> v(d.virtual_size());
  EXPECT_TRUE(d.read(0, v.data(), v.size()).ok());
  return v;
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::unique_ptr<BlockDevice> open_dev(const std::string& path, bool writable) {
  OpenOptions o;
  o.writable = writable;
  auto d = open_image(path, o);
  EXPECT_TRUE(d.ok()) << d.error().message();
  return d.ok() ? std::move(d).value() : nullptr;
}

// Writes the same random and sequential pattern to the image and to a raw reference.
void write_pattern(BlockDevice& img, BlockDevice& raw, uint32_t seed, int ops) {
  std::mt19937_64 rng(seed);
  uint64_t size = img.virtual_size();
  uint64_t seq = 0;
  for (int i = 0; i < ops; ++i) {
    uint64_t len, off;
    if (i % 3 == 0) {  // sequential stream
      len = 256 * 1024;
      off = seq % (size - len);
      seq += len;
    } else {
      len = 512 * (1 + rng() % 64);
      off = (rng() % (size / 512)) * 512;
      if (off + len > size) off = size - len;
    }
    std::vector<uint8_t> buf(len);
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    ASSERT_TRUE(img.write(off, buf.data(), len).ok());
    ASSERT_TRUE(raw.write(off, buf.data(), len).ok());
    if (i % 7 == 0) {
      ASSERT_TRUE(img.write_zeroes(off, len / 2).ok());
      ASSERT_TRUE(raw.write_zeroes(off, len / 2).ok());
    }
  }
  ASSERT_TRUE(img.flush().ok());
}

TEST(Qcow2Interop, HostvisorImagesPassQemuCheckAndCompare) {
  REQUIRE_QEMU_IMG();
  ScratchDir dir;
  for (uint32_t bits : {16u, 9u, 20u}) {
    std::string img = dir.file("h" + std::to_string(bits) + ".qcow2");
    std::string ref = dir.file("h" + std::to_string(bits) + ".raw");
    Qcow2CreateOptions co;
    co.size = 64 << 20;
    co.cluster_bits = bits;
    ASSERT_TRUE(Qcow2Image::create(img, co).ok());
    ASSERT_TRUE(RawImage::create(ref, co.size).ok());
    {
      auto d = open_dev(img, true);
      auto r = open_dev(ref, true);
      write_pattern(*d, *r, bits, 150);
    }
    qemu_check_clean(img);
    qemu_compare(img, ref);
  }
}

TEST(Qcow2Interop, HostvisorBackingChainsAndSnapshotsPassQemuCheck) {
  REQUIRE_QEMU_IMG();
  ScratchDir dir;
  uint64_t size = 32 << 20;
  ASSERT_TRUE(RawImage::create(dir.file("ref.raw"), size).ok());
  ASSERT_TRUE(RawImage::create(dir.file("base.raw"), size).ok());
  {
    auto b = open_dev(dir.file("base.raw"), true);
    auto r = open_dev(dir.file("ref.raw"), true);
    write_pattern(*b, *r, 1, 60);
  }
  Qcow2CreateOptions co;
  co.size = size;
  co.backing_file = "base.raw";
  co.backing_format = "raw";
  ASSERT_TRUE(Qcow2Image::create(dir.file("mid.qcow2"), co).ok());
  co.backing_file = "mid.qcow2";
  co.backing_format = "qcow2";
  ASSERT_TRUE(Qcow2Image::create(dir.file("top.qcow2"), co).ok());
  {
    auto m = open_dev(dir.file("mid.qcow2"), true);
    auto r = open_dev(dir.file("ref.raw"), true);
    write_pattern(*m, *r, 2, 60);
  }
  ASSERT_TRUE(RawImage::create(dir.file("snapref.raw"), size).ok());
  {
    auto t = open_dev(dir.file("top.qcow2"), true);
    auto r = open_dev(dir.file("ref.raw"), true);
    write_pattern(*t, *r, 3, 60);
    ASSERT_TRUE(dynamic_cast<Qcow2Image*>(t.get())->create_snapshot("snap1").ok());
    std::vector<uint8_t> now = read_all(*t);
    auto s = open_dev(dir.file("snapref.raw"), true);
    ASSERT_TRUE(s->write(0, now.data(), now.size()).ok());
    write_pattern(*t, *r, 4, 60);
  }
  qemu_check_clean(dir.file("mid.qcow2"));
  qemu_check_clean(dir.file("top.qcow2"));
  qemu_compare(dir.file("top.qcow2"), dir.file("ref.raw"));
  std::string out;
  ASSERT_EQ(run_command("qemu-img snapshot -l '" + dir.file("top.qcow2") + "'", &out), 0) << out;
  EXPECT_NE(out.find("snap1"), std::string::npos) << out;
  // qemu-img applies our snapshot and sees the data as it was.
  ASSERT_EQ(run_command("cp '" + dir.file("top.qcow2") + "' '" + dir.file("top2.qcow2") + "'"), 0);
  ASSERT_EQ(run_command("qemu-img snapshot -a snap1 '" + dir.file("top2.qcow2") + "'", &out), 0) << out;
  qemu_check_clean(dir.file("top2.qcow2"));
  qemu_compare(dir.file("top2.qcow2"), dir.file("snapref.raw"));
  // Commit the top overlay into mid; mid (over base) then reads like the reference.
  auto committed = commit_image(dir.file("top.qcow2"));
  ASSERT_TRUE(committed.ok()) << committed.error().message();
  qemu_check_clean(dir.file("mid.qcow2"));
  qemu_compare(dir.file("mid.qcow2"), dir.file("ref.raw"));
  EXPECT_GT(*committed, 0u);
  {
    // The overlay was emptied: everything reads through to mid again.
    auto t = open_dev(dir.file("top.qcow2"), false);
    auto* q = dynamic_cast<Qcow2Image*>(t.get());
    for (uint64_t off = 0; off < size; off += 65536) ASSERT_FALSE(*q->is_allocated(off)) << off;
  }
  qemu_check_clean(dir.file("top.qcow2"));
  qemu_compare(dir.file("top.qcow2"), dir.file("ref.raw"));
  // Delete our snapshot; qemu-img agrees the image is clean.
  {
    auto t = open_dev(dir.file("top.qcow2"), true);
    ASSERT_TRUE(dynamic_cast<Qcow2Image*>(t.get())->delete_snapshot("snap1").ok());
  }
  qemu_check_clean(dir.file("top.qcow2"));
  qemu_compare(dir.file("top.qcow2"), dir.file("ref.raw"));
  // Compressed convert.
  ConvertOptions cv;
  cv.compress = true;
  ASSERT_TRUE(convert_image(dir.file("top.qcow2"), dir.file("c.qcow2"), cv).ok());
  qemu_check_clean(dir.file("c.qcow2"));
  qemu_compare(dir.file("c.qcow2"), dir.file("ref.raw"));
}

TEST(Qcow2Interop, QemuImagesReadBackIdentically) {
  REQUIRE_QEMU_IMG();
  ScratchDir dir;
  std::string out;
  auto sh = [&](const std::string& cmd) {
    int rc = run_command("cd '" + dir.path() + "' && " + cmd, &out);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
  };
  // Base with random-ish data from qemu-io patterns, a snapshot, more writes.
  sh("qemu-img create -q -f qcow2 base.qcow2 40M");
  sh("qemu-io -f qcow2 -c 'write -P 0x11 0 5M' -c 'write -P 0x22 7M 300k' -c 'write -z 1M 128k' base.qcow2");
  sh("qemu-img snapshot -c s1 base.qcow2");
  sh("qemu-io -f qcow2 -c 'write -P 0x33 100k 3M' -c 'discard 4M 1M' -c 'write -P 0x44 39M 1M' base.qcow2");
  sh("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2 48M");
  sh("qemu-io -f qcow2 -c 'write -P 0x55 6M 70k' -c 'write -P 0x66 45M 100k' -c 'write -z 0 64k' over.qcow2");
  sh("dd if=/dev/urandom of=rand.raw bs=1M count=8 status=none");
  sh("qemu-img convert -c -O qcow2 rand.raw comp_rand.qcow2");
  sh("qemu-img convert -c -O qcow2 over.qcow2 comp.qcow2");
  sh("qemu-img create -q -f qcow2 -o cluster_size=4k,refcount_bits=8 small.qcow2 10M");
  sh("qemu-io -f qcow2 -c 'write -P 0x77 3k 2M' small.qcow2");
  sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 10M");
  sh("qemu-io -f qcow2 -c 'write -P 0x79 2M 1M' lazy.qcow2");
  sh("qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 10M");
  sh("qemu-io -f qcow2 -c 'write -P 0x78 1M 1M' v2.qcow2");
  for (const char* name :
       {"base.qcow2", "over.qcow2", "comp_rand.qcow2", "comp.qcow2", "small.qcow2", "lazy.qcow2", "v2.qcow2"}) {
    std::string img = dir.file(name);
    sh(std::string("qemu-img convert -O raw ") + name + " " + name + ".raw");
    auto d = open_dev(img, false);
    ASSERT_TRUE(d) << name;
    EXPECT_EQ(read_all(*d), read_file_bytes(img + ".raw")) << name << " reads differently through hostvisor";
  }
  // Snapshot written by qemu-img: apply it with hostvisor, compare with qemu's view of it.
  sh("cp base.qcow2 base_s1.qcow2 && qemu-img snapshot -a s1 base_s1.qcow2 && qemu-img convert -O raw base_s1.qcow2 "
     "s1.raw");
  {
    auto d = open_dev(dir.file("base.qcow2"), true);
    auto* q = dynamic_cast<Qcow2Image*>(d.get());
    ASSERT_EQ(q->snapshots().size(), 1u);
    EXPECT_EQ(q->snapshots()[0].name, "s1");
    ASSERT_TRUE(q->apply_snapshot("s1").ok());
    EXPECT_EQ(read_all(*d), read_file_bytes(dir.file("s1.raw")));
    // And hostvisor writes into qemu's image keep it clean for qemu.
    std::vector<uint8_t> buf(200000, 0x99);
    ASSERT_TRUE(d->write(3 << 20, buf.data(), buf.size()).ok());
  }
  qemu_check_clean(dir.file("base.qcow2"));
  {
    auto d = open_dev(dir.file("comp.qcow2"), true);
    std::vector<uint8_t> buf(5000, 0xab);
    ASSERT_TRUE(d->write(6 << 20, buf.data(), buf.size()).ok());
  }
  qemu_check_clean(dir.file("comp.qcow2"));
  {
    auto d = open_dev(dir.file("v2.qcow2"), true);
    std::vector<uint8_t> buf(5000, 0xab);
    ASSERT_TRUE(d->write(5 << 20, buf.data(), buf.size()).ok());
    ASSERT_TRUE(d->write_zeroes(1 << 20, 65536).ok());
  }
  qemu_check_clean(dir.file("v2.qcow2"));
  // Lazy refcounts enabled by qemu: hostvisor keeps refcounts exact anyway, so
  // the image never needs the dirty flag.
  {
    auto d = open_dev(dir.file("lazy.qcow2"), true);
    std::vector<uint8_t> buf(300000, 0x5c);
    ASSERT_TRUE(d->write(5 << 20, buf.data(), buf.size()).ok());
  }
  qemu_check_clean(dir.file("lazy.qcow2"));
}

// A 256-image chain (the deepest image_open follows) built by qemu-img, each
// image holding clusters under L2 tables of its own: reading through it
// meets every image's tables, and the disk's one L2 budget bounds them all,
// with at most one table per image over it. Per image budgets would let the
// chain hold 256 budgets.
TEST(Qcow2Interop, ABackingChainSharesOneCacheBudget) {
  REQUIRE_QEMU_IMG();
  ScratchDir dir;
  constexpr int kImages = 256;
  constexpr uint64_t kCluster = 512;
  constexpr uint64_t kL2Span = kCluster / 8 * kCluster;  // guest bytes one L2 table maps
  constexpr int kTablesPerImage = 8;
  constexpr uint64_t kSize = kL2Span * kImages * kTablesPerImage;
  constexpr uint64_t kBudget = 64 * 1024;  // 128 tables of 512 bytes
  std::string out;
  const std::string create = "qemu-img create -q -f qcow2 -o cluster_size=512 ";
  ASSERT_EQ(run_command("cd '" + dir.path() + "' && " + create + "i0.qcow2 " + std::to_string(kSize) +
                            " && for i in $(seq 1 " + std::to_string(kImages - 1) + "); do " + create +
                            "-u -b i$((i-1)).qcow2 -F qcow2 i$i.qcow2 " + std::to_string(kSize) + " || exit 1; done",
                        &out),
            0)
      << out;
  // Image i owns the L2 spans i, i + 256, ...: one cluster written in each.
  auto owner_offset = [&](int image, int k) { return (uint64_t(k) * kImages + uint64_t(image)) * kL2Span; };
  for (int i = 0; i < kImages; ++i) {
    OpenOptions o;
    o.writable = true;
    o.open_backing = false;
    auto d = open_image(dir.file("i" + std::to_string(i) + ".qcow2"), o);
    ASSERT_TRUE(d.ok()) << d.error().message();
    const std::vector<uint8_t> cluster(kCluster, static_cast<uint8_t>(i + 1));
    for (int k = 0; k < kTablesPerImage; ++k)
      ASSERT_TRUE((*d)->write(owner_offset(i, k), cluster.data(), cluster.size()).ok());
  }
  const std::string top = dir.file("i" + std::to_string(kImages - 1) + ".qcow2");
  qemu_check_clean(top);
  qemu_check_clean(dir.file("i0.qcow2"));

  OpenOptions o;
  o.qcow2_l2_cache_bytes = kBudget;
  auto opened = open_image(top, o);
  ASSERT_TRUE(opened.ok()) << opened.error().message();
  std::vector<Qcow2Image*> chain;
  for (BlockDevice* d = opened->get(); d != nullptr; d = dynamic_cast<Qcow2Image*>(d)->backing()) {
    chain.push_back(dynamic_cast<Qcow2Image*>(d));
    ASSERT_NE(chain.back(), nullptr);
    EXPECT_EQ(chain.back()->cache_budget().l2, chain.front()->cache_budget().l2) << "one budget for the disk";
  }
  ASSERT_EQ(chain.size(), size_t{kImages});
  const qcow2::TableBudget& budget = *chain.front()->cache_budget().l2;
  EXPECT_EQ(budget.limit(), kBudget);
  uint64_t most = 0;
  std::vector<uint8_t> got(kCluster);
  for (int k = 0; k < kTablesPerImage; ++k) {
    for (int i = 0; i < kImages; ++i) {
      ASSERT_TRUE((*opened)->read(owner_offset(i, k), got.data(), got.size()).ok());
      ASSERT_EQ(got[0], static_cast<uint8_t>(i + 1)) << "image " << i << " span " << k;
      ASSERT_EQ(got[kCluster - 1], static_cast<uint8_t>(i + 1));
      most = std::max(most, budget.used());
    }
  }
  // 2048 tables were read; at most the budget and one table per image stay.
  EXPECT_LE(most, kBudget + kImages * kCluster);
  uint64_t held = 0;
  for (Qcow2Image* image : chain) held += image->cached_l2_tables() * kCluster;
  EXPECT_EQ(held, budget.used()) << "the budget counts exactly the tables the chain holds";
  EXPECT_LE(held, kBudget + kImages * kCluster);

  // Writing into the top while its backing images hold tables: theirs are
  // dropped first, and the image stays clean for qemu.
  opened->reset();
  o.writable = true;
  auto writable = open_image(top, o);
  ASSERT_TRUE(writable.ok()) << writable.error().message();
  const std::vector<uint8_t> mine(kCluster, 0xee);
  for (int k = 0; k < kTablesPerImage; ++k) {
    for (int i = 0; i < kImages; i += 3) {
      ASSERT_TRUE((*writable)->read(owner_offset(i, k), got.data(), got.size()).ok());
      ASSERT_TRUE((*writable)->write(owner_offset(i, k) + kCluster, mine.data(), mine.size()).ok());
    }
  }
  ASSERT_TRUE((*writable)->flush().ok());
  const qcow2::TableBudget& written = *dynamic_cast<Qcow2Image*>(writable->get())->cache_budget().l2;
  EXPECT_LE(written.used(), kBudget + kImages * kCluster);
  writable->reset();
  qemu_check_clean(top);
}

}  // namespace
}  // namespace hostvisor::block
