// virtio-balloon's queues on hostile guest memory: random descriptor tables
// and rings for the inflate, deflate, statistics and reporting queues, PFN
// arrays of any length and value, reported ranges anywhere (the rings
// included), statistics buffers of any shape, a host target and
// configuration accesses of any value. The device must answer or mark itself
// needs-reset, never return an error, never crash, and never give back to
// the host a byte outside RAM or of any device's rings: its own and another
// device's at kNeighbourRing, both published in the memory's device areas as
// the transports publish them (every discard reaches the memory's DMA
// observer, which checks it; the descriptor tables and available rings,
// which the device never writes, must come out unchanged). The input, read
// as a snapshot record of the balloon, must decode without a crash and, if
// accepted whole, encode back to the same bytes.
//
// Input: [0] bits: 1 statistics, 2 free page reporting, 4 deflate-on-OOM,
// 8 INDIRECT_DESC, 16 EVENT_IDX, 32 the driver refuses the statistics queue
// (so reporting is queue 2); [1..4] log2 of each queue's size (mod 8);
// [5..8] the host's target in pages; [9] a configuration offset; the rest is
// guest RAM: queue q's descriptor table at q * 0x3000, its driver area
// 0x1000 and device area 0x2000 after that; RAM is [0, 0x40000) and
// [0x80000, 0x90000), so PFNs 0x40..0x7f fall in the hole between.
// Another device's rings take [0x30000, 0x31800).
#include "devices/virtio/balloon/virtio_balloon.h"

#include <poll.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/virtio_constants.h"
#include "fuzz/fuzz_input.h"

using namespace hostvisor;
using hostvisor::fuzz::take;

namespace {

constexpr uint64_t kLowRam = 0x40000;
constexpr uint64_t kHighStart = 0x80000, kHighSize = 0x10000;
constexpr unsigned kQueues = 4;
constexpr uint64_t kNeighbourRing = 0x30000, kNeighbourRingSize = 0x1800;

struct Area {
  uint64_t start, end;
};

bool overlaps(uint64_t start, uint64_t length, const Area& area) {
  return start < area.end && area.start < start + length;
}

void decode_as_state(const uint8_t* data, size_t size) {
  StateReader in(std::span(data, size), "fuzz");
  const VirtioBalloon::State state = VirtioBalloon::decode_state(in);
  if (!in.finish()) return;
  StateWriter out;
  VirtioBalloon::encode_state(out, state);
  if (!std::equal(out.bytes().begin(), out.bytes().end(), data, data + size)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  decode_as_state(data, size);
  static GuestMemory memory =
      std::move(GuestMemory::create({{GuestAddress(0), kLowRam}, {GuestAddress(kHighStart), kHighSize}})).value();
  const uint8_t bits = take<uint8_t>(data, size);
  uint8_t log2_sizes[kQueues];
  for (uint8_t& s : log2_sizes) s = take<uint8_t>(data, size) % 8;
  const uint32_t target = take<uint32_t>(data, size);
  const uint8_t config_offset = take<uint8_t>(data, size);

  (void)memory.fill(GuestAddress(0), 0, kLowRam);
  (void)memory.fill(GuestAddress(kHighStart), 0, kHighSize);
  (void)memory.write(GuestAddress(0), std::span(data, std::min<size_t>(size, kLowRam)));
  if (size > kLowRam)
    (void)memory.write(GuestAddress(kHighStart),
                       std::span(data + kLowRam, std::min<size_t>(size - kLowRam, kHighSize)));

  VirtioBalloon device(VirtioBalloonOptions{.deflate_on_oom = (bits & 4) != 0,
                                            .free_page_reporting = (bits & 2) != 0,
                                            .stats_interval = std::chrono::seconds((bits & 1) ? 1 : 0)});
  uint64_t features = device.device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
  if (!(bits & 8)) features &= ~virtio::feature_bit(virtio::kFeatureIndirectDesc);
  if (!(bits & 16)) features &= ~virtio::feature_bit(virtio::kFeatureEventIdx);
  if (bits & 32) features &= ~virtio::feature_bit(virtio_balloon::kFeatureStatsVq);

  const uint16_t count = device.queue_count();
  Virtqueue queues[kQueues];
  bool enabled[kQueues] = {};
  // Every ring (the neighbour's first); the ones the device never writes.
  std::vector<Area> rings{{kNeighbourRing, kNeighbourRing + kNeighbourRingSize}}, unwritten;
  std::vector<DeviceMemoryAreas::Area> published;
  for (uint16_t q = 0; q < count; ++q) {
    const uint64_t base = q * 0x3000ull;
    const uint16_t qsize = static_cast<uint16_t>(1u << log2_sizes[q]);
    const VirtqueueLayout layout{qsize, GuestAddress(base), GuestAddress(base + 0x1000), GuestAddress(base + 0x2000)};
    auto queue = Virtqueue::create(memory, layout, features);
    if (!queue) __builtin_trap();  // fixed, valid layouts
    queues[q] = std::move(queue).value();
    enabled[q] = true;
    unwritten.push_back({base, base + 16ull * qsize});
    unwritten.push_back({base + 0x1000, base + 0x1000 + 6 + 2ull * qsize});
    rings.insert(rings.end(), unwritten.end() - 2, unwritten.end());
    rings.push_back({base + 0x2000, base + 0x2000 + 6 + 8ull * qsize});
    const auto areas = virtqueue_ring_areas(layout);
    published.insert(published.end(), areas.begin(), areas.end());
  }
  // As the transports publish them when the driver enables a queue.
  const int neighbour = 0;
  memory.device_areas().publish(&neighbour, {{kNeighbourRing, kNeighbourRing + kNeighbourRingSize}});
  memory.device_areas().publish(&device, std::move(published));
  std::vector<std::vector<uint8_t>> before;
  for (const Area& area : unwritten) {
    const auto bytes = memory.slice(GuestAddress(area.start), area.end - area.start).value();
    before.emplace_back(bytes.begin(), bytes.end());
  }

  // The balloon writes nothing into buffers: every range reported here is a discard.
  memory.set_dma_write_observer([&](GuestAddress at, uint64_t length) {
    if (!memory.contains(at, length)) __builtin_trap();
    for (const Area& ring : rings)
      if (overlaps(at.value(), length, ring)) __builtin_trap();
  });

  testing::RecordingVirtioInterrupt interrupt;
  if (!device.activate(
          VirtioActivation{&memory, features, std::span(queues, count), std::span(enabled, count), &interrupt}))
    __builtin_trap();
  device.set_target_pages(target);
  for (int round = 0; round < 4; ++round) {
    for (uint16_t q = 0; q < count; ++q)
      if (!device.process_queue(q)) __builtin_trap();  // guest errors are signalled, never returned
    pollfd rescheduled{device.reschedule_fd(), POLLIN, 0};
    if (::poll(&rescheduled, 1, 0) == 1) device.run_rescheduled();
  }
  for (size_t i = 0; i < unwritten.size(); ++i) {
    auto now = memory.slice(GuestAddress(unwritten[i].start), unwritten[i].end - unwritten[i].start).value();
    if (!std::equal(now.begin(), now.end(), before[i].begin(), before[i].end())) __builtin_trap();
  }
  uint8_t config[16];
  device.read_config(config_offset % 24, config);
  device.write_config(config_offset % 24, std::span(config, config_offset % 9));
  if (!device.quiesce()) __builtin_trap();
  memory.set_dma_write_observer({});
  device.reset();
  memory.device_areas().publish(&device, {});
  memory.device_areas().publish(&neighbour, {});
  return 0;
}
