// `hostvisor disk ...` end to end through block_disk_tool (the same
// src/cli/disk_command.cpp the hostvisor binary links), checked against qemu-img.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <vector>

#include "block/qcow2/format.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

using testing::run_command;

class DiskCli : public ::testing::Test {
 protected:
  int disk(const std::string& args, std::string* out = nullptr) {
    return run_command("cd '" + dir_.path() + "' && " HV_DISK_TOOL " disk " + args, out ? out : &last_);
  }
  int sh(const std::string& cmd, std::string* out = nullptr) {
    return run_command("cd '" + dir_.path() + "' && " + cmd, out ? out : &last_);
  }
  nlohmann::json info(const std::string& file) {
    std::string out;
    EXPECT_EQ(disk("info --json " + file, &out), 0) << out;
    return nlohmann::json::parse(out, nullptr, false);
  }
  testing::ScratchDir dir_;
  std::string last_;
};

TEST_F(DiskCli, CreateInfoCheckConvert) {
  ASSERT_EQ(disk("create --size 64M a.qcow2"), 0) << last_;
  auto j = info("a.qcow2");
  EXPECT_EQ(j["format"], "qcow2");
  EXPECT_EQ(j["virtual-size"], 64u << 20);
  EXPECT_EQ(j["cluster-size"], 65536u);
  ASSERT_EQ(disk("check a.qcow2"), 0) << last_;
  EXPECT_NE(last_.find("No errors"), std::string::npos);
  ASSERT_EQ(sh("qemu-io -f qcow2 -c 'write -P 0x3c 1M 3M' a.qcow2"), 0) << last_;
  ASSERT_EQ(disk("convert --format raw a.qcow2 a.raw"), 0) << last_;
  ASSERT_EQ(sh("qemu-img compare a.qcow2 a.raw"), 0) << last_;
  ASSERT_EQ(disk("convert --compress a.raw c.qcow2"), 0) << last_;
  ASSERT_EQ(sh("qemu-img check c.qcow2"), 0) << last_;
  ASSERT_EQ(sh("qemu-img compare c.qcow2 a.raw"), 0) << last_;
  ASSERT_EQ(disk("create --format raw --size 1M r.img"), 0) << last_;
  EXPECT_EQ(info("r.img")["format"], "raw");
  ASSERT_EQ(disk("check r.img"), 0) << last_;
}

TEST_F(DiskCli, BackingSnapshotsResizeCommit) {
  ASSERT_EQ(sh("mkdir sub && qemu-img create -q -f raw sub/base.raw 32M && qemu-io -f raw -c 'write -P 0x11 0 32M' "
               "sub/base.raw"),
            0)
      << last_;
  // Relative backing names resolve against the overlay's directory; size comes from the backing file.
  ASSERT_EQ(disk("create --backing base.raw sub/over.qcow2"), 0) << last_;
  auto j = info("sub/over.qcow2");
  EXPECT_EQ(j["backing-filename"], "base.raw");
  EXPECT_EQ(j["backing-filename-format"], "raw");
  EXPECT_EQ(j["virtual-size"], 32u << 20);
  ASSERT_EQ(sh("qemu-io -f qcow2 -c 'write -P 0x22 4M 1M' sub/over.qcow2"), 0) << last_;
  ASSERT_EQ(disk("snapshot create sub/over.qcow2 before"), 0) << last_;
  ASSERT_EQ(sh("qemu-io -f qcow2 -c 'write -P 0x33 4M 1M' sub/over.qcow2"), 0) << last_;
  std::string out;
  ASSERT_EQ(disk("snapshot list --json sub/over.qcow2", &out), 0) << out;
  auto list = nlohmann::json::parse(out, nullptr, false);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["name"], "before");
  ASSERT_EQ(sh("qemu-img snapshot -l sub/over.qcow2", &out), 0);
  EXPECT_NE(out.find("before"), std::string::npos) << out;
  ASSERT_EQ(disk("snapshot apply sub/over.qcow2 before"), 0) << last_;
  ASSERT_EQ(sh("qemu-io -f qcow2 -c 'read -P 0x22 4M 1M' sub/over.qcow2", &out), 0);
  EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
  ASSERT_EQ(disk("snapshot delete sub/over.qcow2 before"), 0) << last_;
  EXPECT_NE(disk("snapshot delete sub/over.qcow2 before"), 0);
  EXPECT_NE(last_.find("no snapshot"), std::string::npos) << last_;
  ASSERT_EQ(sh("qemu-img check sub/over.qcow2"), 0) << last_;
  ASSERT_EQ(disk("commit sub/over.qcow2"), 0) << last_;
  ASSERT_EQ(sh("qemu-io -f raw -c 'read -P 0x22 4M 1M' -c 'read -P 0x11 0 4M' sub/base.raw", &out), 0);
  EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
  ASSERT_EQ(disk("resize sub/over.qcow2 +1G"), 0) << last_;
  EXPECT_EQ(info("sub/over.qcow2")["virtual-size"], (32u << 20) + (1u << 30));
  ASSERT_EQ(sh("qemu-img check sub/over.qcow2"), 0) << last_;
  EXPECT_NE(disk("resize sub/over.qcow2 1M"), 0);
  EXPECT_NE(last_.find("shrinking"), std::string::npos) << last_;
  // Growing past 2^64 bytes must fail, not wrap to a smaller size (which
  // would truncate a raw image, as raw may shrink).
  const auto raw_size = info("sub/base.raw")["virtual-size"];
  EXPECT_NE(disk("resize sub/base.raw +18446744073709551615"), 0);
  EXPECT_EQ(info("sub/base.raw")["virtual-size"], raw_size);
}

TEST_F(DiskCli, ErrorsSayWhatAndWhere) {
  EXPECT_NE(disk("info missing.qcow2"), 0);
  EXPECT_NE(last_.find("missing.qcow2"), std::string::npos) << last_;
  EXPECT_EQ(disk("create x.qcow2"), 2);
  EXPECT_NE(last_.find("--size is required"), std::string::npos) << last_;
  EXPECT_NE(disk("create --backing nothere.qcow2 y.qcow2"), 0);
  EXPECT_NE(last_.find("nothere.qcow2"), std::string::npos) << last_;
  // A backing file that disappears later, and one that loops.
  ASSERT_EQ(disk("create --size 1M b.qcow2"), 0);
  ASSERT_EQ(disk("create --backing b.qcow2 t.qcow2"), 0);
  ASSERT_EQ(sh("rm b.qcow2"), 0);
  EXPECT_NE(disk("info t.qcow2"), 0);
  EXPECT_NE(last_.find("backing file 'b.qcow2'"), std::string::npos) << last_;
  EXPECT_NE(last_.find("missing"), std::string::npos) << last_;
  ASSERT_EQ(sh("qemu-img create -q -f qcow2 -b t.qcow2 -F qcow2 -u b.qcow2 1M"), 0) << last_;
  EXPECT_NE(disk("info t.qcow2"), 0);
  EXPECT_NE(last_.find("loop"), std::string::npos) << last_;
  // A corrupt header.
  ASSERT_EQ(disk("create --size 1M c.qcow2"), 0);
  ASSERT_EQ(sh("printf '\\000\\000\\000\\050' | dd of=c.qcow2 bs=1 seek=20 conv=notrunc status=none"), 0);
  EXPECT_EQ(disk("check c.qcow2"), 1);
  EXPECT_NE(last_.find("cluster_bits 40"), std::string::npos) << last_;
  EXPECT_NE(disk("snapshot create c.qcow2 s"), 0);
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The file without the header's corrupt bit, the one change a refusal makes.
std::vector<uint8_t> bytes_but_corrupt_bit(const std::string& path) {
  std::vector<uint8_t> b = file_bytes(path);
  if (b.size() >= 80) qcow2::store_be64(&b[72], qcow2::load_be64(&b[72]) & ~qcow2::kIncompatCorrupt);
  return b;
}

void poke64(const std::string& path, uint64_t offset, uint64_t value) {
  uint8_t b[8];
  qcow2::store_be64(b, value);
  int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, b, 8, static_cast<off_t>(offset)), 8);
  ::close(fd);
}

// Crafted images whose tables point into their own metadata: every disk
// command that changes an image refuses them, changes nothing but the
// header's corrupt bit, and names `disk check --repair` as the way out.
TEST_F(DiskCli, CommandsThatWriteRefuseCraftedMetadataOverlaps) {
  ASSERT_EQ(disk("create --format raw --size 1M base.raw"), 0) << last_;
  ASSERT_EQ(disk("create --backing base.raw --cluster-size 512 good.qcow2"), 0) << last_;
  ASSERT_EQ(sh("qemu-io -f qcow2 -c 'write -P 0x61 0 1K' good.qcow2"), 0) << last_;
  ASSERT_EQ(disk("snapshot create good.qcow2 s0"), 0) << last_;
  std::vector<uint8_t> head = file_bytes(dir_.file("good.qcow2"));
  ASSERT_GE(head.size(), 72u);
  const uint64_t l1 = qcow2::load_be64(&head[40]);
  const uint64_t reftable = qcow2::load_be64(&head[48]);
  const uint64_t l2 = qcow2::load_be64(&head[l1]) & qcow2::kOffsetMask;
  ASSERT_NE(l2, 0u);
  struct Craft {
    const char* name;
    uint64_t at, value;
  };
  const Craft crafts[] = {
      {"data cluster in the L1 table", l2 + 8, l1 | qcow2::kFlagCopied},
      {"L2 table in the refcount table", l1, reftable | qcow2::kFlagCopied},
  };
  const char* commands[] = {"snapshot create F s1", "snapshot apply F s0", "snapshot delete F s0", "resize F +1M",
                            "commit F"};
  std::vector<uint8_t> backing = file_bytes(dir_.file("base.raw"));
  for (const Craft& craft : crafts) {
    for (std::string command : commands) {
      SCOPED_TRACE(std::string(craft.name) + ": disk " + command);
      ASSERT_EQ(sh("cp good.qcow2 F"), 0);
      poke64(dir_.file("F"), craft.at, craft.value);
      std::vector<uint8_t> before = file_bytes(dir_.file("F"));
      EXPECT_NE(disk(command), 0) << last_;
      EXPECT_NE(last_.find("disk check --repair"), std::string::npos) << last_;
      EXPECT_EQ(bytes_but_corrupt_bit(dir_.file("F")), before) << "the image changed";
      EXPECT_EQ(file_bytes(dir_.file("base.raw")), backing) << "the backing file changed";
      // Marked corrupt: a second attempt is refused at once.
      EXPECT_NE(disk("resize F +1M"), 0);
      EXPECT_NE(last_.find("marked corrupt"), std::string::npos) << last_;
    }
  }
}

}  // namespace
}  // namespace hostvisor::block
