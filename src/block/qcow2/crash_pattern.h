// The deterministic write sequence shared by block_crash_writer and the crash
// test that replays it: write i of a run is a pure function of (seed, i).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace hostvisor::block {

struct CrashWrite {
  uint64_t offset;
  uint64_t length;
  bool zeroes;
};

inline CrashWrite crash_write(uint64_t seed, uint64_t i, uint64_t disk_size) {
  std::mt19937_64 rng(seed * 1000003 + i);
  CrashWrite w{};
  uint64_t kind = rng() % 10;
  if (kind < 2) {
    w.length = 64 * 1024 + rng() % (512 * 1024);  // large, spans clusters
  } else if (kind < 8) {
    w.length = 512 * (1 + rng() % 16);  // small, sector-aligned
  } else {
    w.length = 1 + rng() % 10000;  // unaligned
  }
  if (w.length > disk_size) w.length = disk_size;
  w.offset = rng() % (disk_size - w.length + 1);
  if (kind < 8) w.offset &= ~uint64_t{511};
  w.zeroes = rng() % 12 == 0;
  return w;
}

inline std::vector<uint8_t> crash_data(uint64_t seed, uint64_t i, uint64_t length) {
  std::mt19937_64 rng(seed * 7919 + i * 31 + 1);
  std::vector<uint8_t> v(length);
  for (size_t k = 0; k < length; k += 8) {
    uint64_t x = rng();
    for (size_t b = 0; b < 8 && k + b < length; ++b) v[k + b] = static_cast<uint8_t>(x >> (8 * b));
  }
  return v;
}

}  // namespace hostvisor::block
