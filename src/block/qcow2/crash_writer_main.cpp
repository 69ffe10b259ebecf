// block_crash_writer IMAGE LOG SEED [CACHE [async]]: writes to IMAGE forever
// (until killed) and records its progress in LOG, for the crash-consistency test:
//   S i off len z   before write i (z=1: write_zeroes) is issued
//   C i             after write i completed
//   F i             after a flush that started once write i had completed
//                   (async: a flush submitted after write i, which the block
//                   layer completes only after every request before it)
// The data of write i is a pure function of (SEED, i), so the test can replay it.
// With `async` the writes go through BlockDevice::submit(), up to 8 in flight;
// one that overlaps a write still in flight waits for it, so the image's
// contents follow the log's order as in the synchronous mode.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "block/image_open.h"
#include "block/qcow2/crash_pattern.h"

using namespace hostvisor::block;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: block_crash_writer IMAGE LOG SEED [writeback|none|unsafe]\n");
    return 2;
  }
  std::string image = argv[1];
  int log = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return 1;
  uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  OpenOptions o;
  o.writable = true;
  if (argc > 4) o.cache = *parse_cache_mode(argv[4]);
  auto dev = open_image(image, o);
  if (!dev.ok()) {
    std::fprintf(stderr, "block_crash_writer: %s\n", dev.error().message().c_str());
    return 1;
  }
  BlockDevice& d = **dev;
  auto say = [&](const std::string& line) {
    // One write(2) per line; the page cache keeps it across SIGKILL.
    if (::write(log, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::exit(1);
  };
  std::mt19937_64 rng(seed);
  if (argc > 5 && std::string(argv[5]) == "async") {
    struct InFlight {
      uint64_t offset, length;
      std::vector<uint8_t> data;
    };
    std::map<uint64_t, InFlight> in_flight;
    auto overlaps = [&](const CrashWrite& w) {
      for (const auto& [index, f] : in_flight) {
        if (w.offset < f.offset + f.length && f.offset < w.offset + w.length) return true;
      }
      return false;
    };
    auto fail = [](const char* what, uint64_t i, const hostvisor::Result<void>& r) {
      std::fprintf(stderr, "block_crash_writer: %s %llu: %s\n", what, static_cast<unsigned long long>(i),
                   r.error().message().c_str());
      std::exit(1);
    };
    for (uint64_t i = 0;; ++i) {
      CrashWrite w = crash_write(seed, i, d.virtual_size());
      while (in_flight.size() >= 8 || overlaps(w)) d.poll_completions(true);
      say("S " + std::to_string(i) + " " + std::to_string(w.offset) + " " + std::to_string(w.length) + " " +
          (w.zeroes ? "1" : "0") + "\n");
      InFlight& f = in_flight[i];
      f.offset = w.offset;
      f.length = w.length;
      BlockRequest r;
      r.offset = w.offset;
      if (w.zeroes) {
        r.op = BlockOp::kWriteZeroes;
        r.length = w.length;
        r.unmap = i % 2 == 0;
      } else {
        f.data = crash_data(seed, i, w.length);
        r.op = BlockOp::kWrite;
        r.iov = {{f.data.data(), f.data.size()}};
      }
      d.submit(std::move(r), [&, i](hostvisor::Result<void> result) {
        if (!result.ok()) fail("write", i, result);
        say("C " + std::to_string(i) + "\n");
        in_flight.erase(i);
      });
      if (rng() % 8 == 0) {
        d.submit(BlockRequest{BlockOp::kFlush, 0, {}, 0}, [&, i](hostvisor::Result<void> result) {
          if (!result.ok()) fail("flush after write", i, result);
          say("F " + std::to_string(i) + "\n");
        });
      }
      d.poll_completions(false);
    }
  }
  for (uint64_t i = 0;; ++i) {
    CrashWrite w = crash_write(seed, i, d.virtual_size());
    say("S " + std::to_string(i) + " " + std::to_string(w.offset) + " " + std::to_string(w.length) + " " +
        (w.zeroes ? "1" : "0") + "\n");
    auto r = w.zeroes ? d.write_zeroes(w.offset, w.length) : ([&] {
      std::vector<uint8_t> data = crash_data(seed, i, w.length);
      return d.write(w.offset, data.data(), data.size());
    })();
    if (!r.ok()) {
      std::fprintf(stderr, "block_crash_writer: write %llu: %s\n", static_cast<unsigned long long>(i),
                   r.error().message().c_str());
      return 1;
    }
    say("C " + std::to_string(i) + "\n");
    if (rng() % 8 == 0) {
      auto f = d.flush();
      if (!f.ok()) {
        std::fprintf(stderr, "block_crash_writer: flush: %s\n", f.error().message().c_str());
        return 1;
      }
      say("F " + std::to_string(i) + "\n");
    }
  }
}
