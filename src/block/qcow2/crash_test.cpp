// Crash consistency: block_crash_writer is killed with SIGKILL at random
// moments of a write/flush workload, many times over the same image. After
// every kill the image must pass our check and `qemu-img check` (leaked
// clusters allowed, nothing else), and every write completed before the last
// completed flush must read back.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "block/image_open.h"
#include "block/qcow2/check.h"
#include "block/qcow2/crash_pattern.h"
#include "block/qcow2/image.h"
#include "block/raw/image.h"
#include "block/testing/scratch_dir.h"

namespace hostvisor::block {
namespace {

using testing::run_command;

struct LogEntry {
  char kind;
  uint64_t index, offset = 0, length = 0;
  bool zeroes = false;
};

std::vector<LogEntry> read_log(const std::string& path) {
  std::vector<LogEntry> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream s(line);
    LogEntry e{};
    s >> e.kind >> e.index;
    if (e.kind == 'S') {
      int z = 0;
      s >> e.offset >> e.length >> z;
      e.zeroes = z != 0;
      if (!s) break;  // a torn last line
    } else if (!s) {
      break;
    }
    out.push_back(e);
  }
  return out;
}

std::vector<uint8_t> read_image(const std::string& path) {
  auto d = open_image(path, OpenOptions{});
  EXPECT_TRUE(d.ok()) << d.error().message();
  if (!d.ok()) return {};
  std::vector<uint8_t> v((*d)->virtual_size());
  EXPECT_TRUE((*d)->read(0, v.data(), v.size()).ok());
  return v;
}

void run_crash_rounds(const std::string& image, int rounds, uint32_t seed, const char* cache,
                      const char* mode = "sync") {
  testing::ScratchDir dir;
  std::mt19937 rng(seed);
  std::vector<uint8_t> state = read_image(image);
  ASSERT_FALSE(state.empty());
  for (int round = 0; round < rounds; ++round) {
    std::string log = dir.file("log" + std::to_string(round));
    uint64_t run_seed = seed * 1000 + static_cast<uint64_t>(round);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::string s = std::to_string(run_seed);
      execl(HV_CRASH_WRITER, HV_CRASH_WRITER, image.c_str(), log.c_str(), s.c_str(), cache, mode, nullptr);
      _exit(127);
    }
    usleep(20000 + rng() % 250000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited early with status " << WEXITSTATUS(status) << " in round "
                                     << round;
    // Our check and qemu-img's: leaks at most.
    auto report = check_qcow2(image, false);
    ASSERT_TRUE(report.ok()) << report.error().message();
    std::string msgs;
    for (const auto& m : report->messages) msgs += m + "\n";
    ASSERT_EQ(report->corruptions, 0u) << "round " << round << "\n" << msgs;
    std::string out;
    int rc = run_command("qemu-img check '" + image + "'", &out);
    ASSERT_TRUE(rc == 0 || rc == 3) << "qemu-img check exit " << rc << " after round " << round << "\n" << out;
    // Replay: writes up to the last completed flush must be there; bytes a later
    // write touched may hold either version.
    std::vector<LogEntry> entries = read_log(log);
    int64_t flushed = -1;
    for (const auto& e : entries) {
      if (e.kind == 'F') flushed = static_cast<int64_t>(e.index);
    }
    std::vector<uint8_t> expect = state;
    std::vector<bool> uncertain(state.size(), false);
    uint64_t durable = 0;
    for (const auto& e : entries) {
      if (e.kind != 'S') continue;
      if (static_cast<int64_t>(e.index) <= flushed) {
        if (e.zeroes) {
          std::memset(&expect[e.offset], 0, e.length);
        } else {
          std::vector<uint8_t> data = crash_data(run_seed, e.index, e.length);
          std::memcpy(&expect[e.offset], data.data(), e.length);
        }
        ++durable;
      } else {
        for (uint64_t k = 0; k < e.length; ++k) uncertain[e.offset + k] = true;
      }
    }
    std::vector<uint8_t> now = read_image(image);
    ASSERT_EQ(now.size(), expect.size());
    for (size_t k = 0; k < now.size(); ++k) {
      if (uncertain[k]) continue;
      ASSERT_EQ(now[k], expect[k]) << "round " << round << ": byte " << k << " lost (last flush after write " << flushed
                                   << ", " << durable << " durable writes)";
    }
    state = std::move(now);
  }
}

TEST(Qcow2Crash, SigkillDuringWritesLosesNothingFlushed) {
  testing::ScratchDir dir;
  for (uint32_t bits : {16u, 12u, 9u}) {
    std::string image = dir.file("crash" + std::to_string(bits) + ".qcow2");
    Qcow2CreateOptions co;
    co.size = 24 << 20;
    co.cluster_bits = bits;
    ASSERT_TRUE(Qcow2Image::create(image, co).ok());
    run_crash_rounds(image, 12, bits, "writeback");
  }
}

TEST(Qcow2Crash, SigkillDuringCopyOnWriteAfterSnapshot) {
  // Every table and data cluster is shared with a snapshot, so the writes copy
  // L2 tables and clusters and free the old references once durable.
  testing::ScratchDir dir;
  std::string image = dir.file("snap.qcow2");
  Qcow2CreateOptions co;
  co.size = 16 << 20;
  co.cluster_bits = 14;
  ASSERT_TRUE(Qcow2Image::create(image, co).ok());
  std::vector<uint8_t> data = crash_data(99, 0, co.size);
  {
    OpenOptions o;
    o.writable = true;
    auto d = open_image(image, o);
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE((*d)->write(0, data.data(), data.size()).ok());
    ASSERT_TRUE(dynamic_cast<Qcow2Image*>(d->get())->create_snapshot("base").ok());
  }
  run_crash_rounds(image, 10, 5, "writeback");
  // The snapshot still holds the original data.
  OpenOptions o;
  o.writable = true;
  auto d = open_image(image, o);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(dynamic_cast<Qcow2Image*>(d->get())->apply_snapshot("base").ok());
  std::vector<uint8_t> back(co.size);
  ASSERT_TRUE((*d)->read(0, back.data(), back.size()).ok());
  EXPECT_TRUE(back == data);
}

TEST(Qcow2Crash, SigkillWithBackingFileAndDirectIo) {
  testing::ScratchDir dir;
  std::string base = dir.file("base.raw");
  ASSERT_TRUE(RawImage::create(base, 16 << 20).ok());
  {
    OpenOptions o;
    o.writable = true;
    auto b = open_image(base, o);
    ASSERT_TRUE(b.ok());
    std::vector<uint8_t> data = crash_data(4242, 0, 16 << 20);
    ASSERT_TRUE((*b)->write(0, data.data(), data.size()).ok());
  }
  Qcow2CreateOptions co;
  co.size = 16 << 20;
  co.backing_file = "base.raw";
  co.backing_format = "raw";
  std::string image = dir.file("over.qcow2");
  ASSERT_TRUE(Qcow2Image::create(image, co).ok());
  run_crash_rounds(image, 12, 77, "none");
}

// The asynchronous path (as virtio-blk uses it): direct-path writes in
// flight while the worker allocates and updates metadata, flushes completing
// only after everything submitted before them.
TEST(Qcow2Crash, SigkillDuringAsynchronousWrites) {
  testing::ScratchDir dir;
  for (const char* cache : {"writeback", "none"}) {
    std::string image = dir.file(std::string("async-") + cache + ".qcow2");
    Qcow2CreateOptions co;
    co.size = 24 << 20;
    co.cluster_bits = 12;
    ASSERT_TRUE(Qcow2Image::create(image, co).ok());
    run_crash_rounds(image, 12, 31, cache, "async");
  }
}

}  // namespace
}  // namespace hostvisor::block
