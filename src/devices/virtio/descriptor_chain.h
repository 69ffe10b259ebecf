// One request from the driver: a validated chain of guest buffers, the
// device-readable ones first, then the device-writable ones (2.7.4). Built by
// Virtqueue::pop, which has already checked every buffer lies in guest RAM,
// so the copy helpers only fail if RAM changed underneath.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "memory/guest_address.h"
#include "memory/guest_memory.h"

namespace hostvisor {

struct VirtioBuffer {
  GuestAddress address;
  uint32_t length = 0;
  bool device_writable = false;
};

class DescriptorChain {
 public:
  DescriptorChain() = default;
  DescriptorChain(uint16_t head, std::vector<VirtioBuffer> buffers);

  // The head descriptor index: what goes back in the used ring.
  uint16_t head() const { return head_; }
  std::span<const VirtioBuffer> buffers() const { return buffers_; }
  std::span<const VirtioBuffer> readable() const { return std::span(buffers_).first(readable_count_); }
  std::span<const VirtioBuffer> writable() const { return std::span(buffers_).subspan(readable_count_); }
  uint64_t readable_bytes() const { return readable_bytes_; }
  uint64_t writable_bytes() const { return writable_bytes_; }

  // Gathers up to out.size() bytes of the readable part from byte `offset`
  // on; returns how many were copied (short at the end of the chain).
  Result<uint64_t> read(const GuestMemory& memory, uint64_t offset, std::span<uint8_t> out) const;
  // Scatters `data` into the writable part from byte `offset` on; returns how
  // many bytes fitted.
  Result<uint64_t> write(GuestMemory& memory, uint64_t offset, std::span<const uint8_t> data) const;

 private:
  uint16_t head_ = 0;
  std::vector<VirtioBuffer> buffers_;
  size_t readable_count_ = 0;
  uint64_t readable_bytes_ = 0;
  uint64_t writable_bytes_ = 0;
};

}  // namespace hostvisor
