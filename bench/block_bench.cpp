// bench_block: hostvisor's block layer under a fixed request pattern, the same
// one `qemu-img bench` issues (count requests of bs bytes, depth in flight,
// offsets advancing by step and wrapping at the end of the disk), so the two
// can be compared on the same file. Prints "ops N seconds S iops I mbps M".
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "block/host_file.h"
#include "block/image_open.h"

using namespace hostvisor::block;

int main(int argc, char** argv) {
  CLI::App app{"Block layer benchmark (same pattern as qemu-img bench)", "bench_block"};
  std::string file, format = "auto", cache = "none", engine = "auto";
  bool write = false;
  uint64_t bs = 4096, count = 100000, step = 0;
  unsigned depth = 32;
  app.add_option("FILE", file)->required();
  app.add_option("-f,--format", format);
  app.add_option("-t,--cache", cache);
  app.add_option("-i,--engine", engine);
  app.add_flag("-w,--write", write);
  app.add_option("-s,--bs", bs);
  app.add_option("-c,--count", count);
  app.add_option("-d,--depth", depth);
  app.add_option("-S,--step", step, "offset step (default: bs)");
  CLI11_PARSE(app, argc, argv);
  if (step == 0) step = bs;
  OpenOptions o;
  o.format = *parse_image_format(format);
  auto c = parse_cache_mode(cache);
  auto e = parse_engine_kind(engine);
  if (!c.ok() || !e.ok()) {
    std::fprintf(stderr, "bench_block: bad --cache or --engine\n");
    return 2;
  }
  o.cache = *c;
  o.engine = *e;
  o.writable = write;
  o.queue_depth = std::max(depth, 1u) * 2;
  auto dev = open_image(file, o);
  if (!dev.ok()) {
    std::fprintf(stderr, "bench_block: %s\n", dev.error().message().c_str());
    return 1;
  }
  BlockDevice& d = **dev;
  uint64_t size = d.virtual_size() / bs * bs;
  // One buffer shared by all requests in flight, as qemu-img bench does: the
  // figures then measure the I/O path, not how many pages are touched.
  AlignedBuffer buf(bs);
  std::memset(buf.data(), 0xa5, bs);
  std::vector<unsigned> free_slots;
  for (unsigned i = 0; i < depth; ++i) free_slots.push_back(i);
  uint64_t offset = 0, issued = 0, done = 0, failed = 0;
  auto start = std::chrono::steady_clock::now();
  while (done < count) {
    while (issued < count && !free_slots.empty()) {
      unsigned slot = free_slots.back();
      free_slots.pop_back();
      BlockRequest r{write ? BlockOp::kWrite : BlockOp::kRead, offset, {{buf.data(), bs}}, 0};
      d.submit(std::move(r), [&, slot](hostvisor::Result<void> res) {
        if (!res.ok()) ++failed;
        ++done;
        free_slots.push_back(slot);
      });
      ++issued;
      offset += step;
      if (offset + bs > size) offset %= size;
      offset = offset / bs * bs;
    }
    d.poll_completions(true);
  }
  if (write) {
    auto f = d.flush();
    if (!f.ok()) ++failed;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("ops %llu seconds %.3f iops %.0f mbps %.1f failed %llu\n", static_cast<unsigned long long>(count), secs,
              count / secs, count * bs / secs / 1e6, static_cast<unsigned long long>(failed));
  return failed ? 1 : 0;
}
