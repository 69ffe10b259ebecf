// The driver side of a split virtqueue, for tests and fuzz targets: lays out
// the descriptor table and rings in guest memory the way a guest driver
// would and lets a test write any (including hostile) descriptors.
#pragma once

#include <cstdint>
#include <vector>

#include "devices/virtio/virtio_constants.h"
#include "devices/virtio/virtqueue.h"
#include "memory/guest_memory.h"

namespace hostvisor::testing {

class VirtqueueTestDriver {
 public:
  struct Buffer {
    uint64_t address;
    uint32_t length;
    bool writable;
  };
  struct UsedElement {
    uint32_t id;
    uint32_t len;
  };

  // Descriptor table at `base`, available ring right after it, used ring
  // at the next 4 KiB boundary.
  VirtqueueTestDriver(GuestMemory& memory, uint16_t size, uint64_t base) : memory_(memory) {
    layout_.size = size;
    layout_.desc_table = GuestAddress(base);
    layout_.avail_ring = GuestAddress(base + 16ull * size);
    layout_.used_ring = GuestAddress((base + 16ull * size + 6 + 2ull * size + 4095) & ~4095ull);
  }

  const VirtqueueLayout& layout() const { return layout_; }
  uint64_t end() const { return layout_.used_ring.value() + 6 + 8ull * layout_.size; }

  void write_desc(uint16_t index, uint64_t address, uint32_t length, uint16_t flags, uint16_t next) {
    write_desc_at(layout_.desc_table.value() + 16ull * index, address, length, flags, next);
  }
  void write_desc_at(uint64_t at, uint64_t address, uint32_t length, uint16_t flags, uint16_t next) {
    (void)memory_.write_obj<uint64_t>(GuestAddress(at), address);
    (void)memory_.write_obj<uint32_t>(GuestAddress(at + 8), length);
    (void)memory_.write_obj<uint16_t>(GuestAddress(at + 12), flags);
    (void)memory_.write_obj<uint16_t>(GuestAddress(at + 14), next);
  }

  // Writes `buffers` as a chain in descriptors first, first+1, ... and makes it available.
  void add_chain(uint16_t first, const std::vector<Buffer>& buffers) {
    for (size_t i = 0; i < buffers.size(); ++i) {
      const bool last = i + 1 == buffers.size();
      const uint16_t index = static_cast<uint16_t>((first + i) % layout_.size);
      write_desc(index, buffers[i].address, buffers[i].length,
                 static_cast<uint16_t>((last ? 0 : virtio::kDescFlagNext) |
                                       (buffers[i].writable ? virtio::kDescFlagWrite : 0)),
                 static_cast<uint16_t>((index + 1) % layout_.size));
    }
    publish(first);
  }

  // Puts `head` in the next available slot and bumps avail->idx.
  void publish(uint16_t head) {
    (void)memory_.write_obj<uint16_t>(layout_.avail_ring + 4 + 2ull * (avail_idx_ % layout_.size), head);
    set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
  }
  void set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    (void)memory_.write_obj<uint16_t>(layout_.avail_ring + 2, idx);
  }
  void set_avail_flags(uint16_t flags) { (void)memory_.write_obj<uint16_t>(layout_.avail_ring, flags); }
  void set_used_event(uint16_t idx) {
    (void)memory_.write_obj<uint16_t>(layout_.avail_ring + 4 + 2ull * layout_.size, idx);
  }

  uint16_t used_idx() const { return memory_.read_obj<uint16_t>(layout_.used_ring + 2).value_or(0xdead); }
  UsedElement used(uint16_t slot) const {
    return memory_.read_obj<UsedElement>(layout_.used_ring + 4 + 8ull * (slot % layout_.size)).value_or({~0u, ~0u});
  }
  uint16_t avail_event() const {
    return memory_.read_obj<uint16_t>(layout_.used_ring + 4 + 8ull * layout_.size).value_or(0xdead);
  }

 private:
  GuestMemory& memory_;
  VirtqueueLayout layout_;
  uint16_t avail_idx_ = 0;
};

}  // namespace hostvisor::testing
