// Split virtqueue processing on hostile guest memory: random ring layout,
// ring indices and memory contents; popping chains, copying through them
// and returning them must never crash or touch memory outside guest RAM.
//
// Input: [0] log2 queue size, [1] feature bits (1: INDIRECT_DESC, 2: EVENT_IDX),
// [2..3] next_avail, [4..5] next_used, [6..17] desc/avail/used offsets
// (u32 each; may point outside RAM), the rest is the initial RAM contents.
#include "devices/virtio/virtqueue.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtio/virtio_constants.h"
#include "fuzz/fuzz_input.h"
#include "memory/guest_memory.h"

using namespace hostvisor;

namespace {
constexpr uint64_t kRamSize = 64 * 1024;

using hostvisor::fuzz::take;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0x1000), kRamSize}})).value();
  const uint8_t log2_size = take<uint8_t>(data, size);
  const uint8_t feature_bits = take<uint8_t>(data, size);
  const uint16_t next_avail = take<uint16_t>(data, size);
  const uint16_t next_used = take<uint16_t>(data, size);
  const uint32_t desc = take<uint32_t>(data, size);
  const uint32_t avail = take<uint32_t>(data, size);
  const uint32_t used = take<uint32_t>(data, size);

  (void)memory.fill(GuestAddress(0x1000), 0, kRamSize);
  (void)memory.write(GuestAddress(0x1000), std::span(data, size < kRamSize ? size : kRamSize));

  uint64_t features = 0;
  if (feature_bits & 1) features |= virtio::feature_bit(virtio::kFeatureIndirectDesc);
  if (feature_bits & 2) features |= virtio::feature_bit(virtio::kFeatureEventIdx);
  const VirtqueueLayout layout{static_cast<uint16_t>(1u << (log2_size % 16)), GuestAddress(desc), GuestAddress(avail),
                               GuestAddress(used)};
  auto created = Virtqueue::create(memory, layout, features);
  if (!created) return 0;
  Virtqueue queue = std::move(created).value();
  queue.restore(Virtqueue::State{next_avail, next_used, next_used, (feature_bits & 4) != 0});

  std::vector<uint8_t> scratch(4096);
  for (int i = 0; i < 64; ++i) {
    auto chain = queue.pop(memory);
    if (!chain || !chain->has_value()) break;  // an error is where a device would stop
    const DescriptorChain& c = **chain;
    auto read = c.read(memory, 0, scratch);
    if (!read) __builtin_trap();  // pop validated every buffer: copying must succeed
    std::memset(scratch.data(), 0xa5, scratch.size());
    auto written = c.write(memory, i, scratch);
    if (!written) __builtin_trap();
    if (!queue.add_used(memory, c, static_cast<uint32_t>(*written))) __builtin_trap();
    (void)queue.needs_interrupt(memory);
  }
  return 0;
}
