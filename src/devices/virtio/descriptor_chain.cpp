#include "devices/virtio/descriptor_chain.h"

#include <algorithm>

namespace hostvisor {

DescriptorChain::DescriptorChain(uint16_t head, std::vector<VirtioBuffer> buffers)
    : head_(head), buffers_(std::move(buffers)) {
  for (const auto& b : buffers_) {
    if (b.device_writable) {
      writable_bytes_ += b.length;
    } else {
      ++readable_count_;
      readable_bytes_ += b.length;
    }
  }
}

Result<uint64_t> DescriptorChain::read(const GuestMemory& memory, uint64_t offset, std::span<uint8_t> out) const {
  uint64_t copied = 0;
  for (const auto& b : readable()) {
    if (copied == out.size()) break;
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.length - offset, out.size() - copied);
    HV_TRY(memory.read(b.address + offset, out.subspan(copied, n)));
    copied += n;
    offset = 0;
  }
  return copied;
}

Result<uint64_t> DescriptorChain::write(GuestMemory& memory, uint64_t offset, std::span<const uint8_t> data) const {
  uint64_t copied = 0;
  for (const auto& b : writable()) {
    if (copied == data.size()) break;
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.length - offset, data.size() - copied);
    HV_TRY(memory.write(b.address + offset, data.subspan(copied, n)));
    copied += n;
    offset = 0;
  }
  return copied;
}

}  // namespace hostvisor
