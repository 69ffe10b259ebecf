// block_crash_writer IMAGE LOG SEED [CACHE]: writes to IMAGE forever (until
// killed) and records its progress in LOG, for the crash-consistency test:
//   S i off len z   before write i (z=1: write_zeroes) is issued
//   C i             after write i completed
//   F i             after a flush that started once write i had completed
// The data of write i is a pure function of (SEED, i), so the test can replay it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "block/crash_pattern.h"
#include "block/image_open.h"

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
