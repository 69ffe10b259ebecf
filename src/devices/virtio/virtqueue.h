// The device side of a split virtqueue (virtio 1.2, 2.7): descriptor table,
// available ring (driver -> device) and used ring (device -> driver).
//
// The driver is hostile. Every ring and buffer address is checked against
// guest RAM with overflow-safe arithmetic; a chain that loops, points
// outside the table, nests indirect tables, puts a device-readable buffer
// after a device-writable one, or adds up to an absurd length is rejected
// with a kGuest error. The transport then marks the device DEVICE_NEEDS_RESET
// (2.1.2); nothing here aborts.
//
// The queue also remembers which heads are in flight (popped, not yet
// returned): a driver that makes a head available again before the device
// returned it is reusing descriptors the device still owns, and pop() refuses
// it as guest misuse. So a device never serves one chain twice, never returns
// a head twice, and never holds more than the queue size of chains.
//
// Not thread-safe: one thread (the device's) drives a queue at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/virtio/descriptor_chain.h"
#include "memory/guest_address.h"
#include "memory/guest_memory.h"

namespace hostvisor {

// vring_need_event (2.7.10): should the side that last saw `old_idx` notify
// now that the index is `new_idx`, given the other side asked to hear at
// `event_idx`? True iff event_idx lies in [old_idx, new_idx) modulo 2^16.
constexpr bool virtio_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

struct VirtqueueLayout {
  uint16_t size = 0;
  GuestAddress desc_table;
  GuestAddress avail_ring;  // "driver area"
  GuestAddress used_ring;   // "device area"
};

// The guest memory a queue's rings take (2.7: descriptor table, then the
// driver and device areas with their flags, index and EVENT_IDX fields),
// for GuestMemory::device_areas().
std::vector<DeviceMemoryAreas::Area> virtqueue_ring_areas(const VirtqueueLayout& layout);

class Virtqueue {
 public:
  // Chains longer than this (counting an indirect table's entries) are
  // rejected. The spec only bounds direct chains by the queue size; Linux
  // never builds indirect tables larger than its queue size, and 1024 is the
  // largest queue common drivers use.
  static constexpr uint32_t kMaxIndirectDescriptors = 1024;
  // A chain's buffers may add up to at most 256 MiB: far above any real
  // request (virtio-blk requests are a few MiB), far below host trouble.
  static constexpr uint64_t kMaxChainBytes = 256ull << 20;

  struct State {
    uint16_t next_avail = 0;
    uint16_t next_used = 0;
    uint16_t signalled_used = 0;
    bool signalled_used_valid = false;
  };

  Virtqueue() = default;
  // Validates the layout the driver programmed (power-of-two size, ring
  // alignment, every ring inside RAM). `features` are the negotiated ones
  // (EVENT_IDX, INDIRECT_DESC matter here).
  static Result<Virtqueue> create(const GuestMemory& memory, const VirtqueueLayout& layout, uint64_t features);

  const VirtqueueLayout& layout() const { return layout_; }
  uint16_t size() const { return layout_.size; }
  bool event_idx() const { return event_idx_; }

  // Takes the next available chain, or nothing if the driver has not made
  // one available. With EVENT_IDX it also publishes avail_event so the
  // driver notifies us for the next buffer. A head already in flight is a
  // kGuest error.
  Result<std::optional<DescriptorChain>> pop(GuestMemory& memory);
  // Does the driver have chains available that pop() has not taken yet?
  Result<bool> has_available(const GuestMemory& memory) const;
  // The driver's avail->idx now: where it will put its next chain.
  Result<uint16_t> avail_idx(const GuestMemory& memory) const;
  // With EVENT_IDX, asks the driver to notify once it makes entry `idx`
  // available (avail_event = idx); pop() moves it on again. Without
  // EVENT_IDX the driver notifies for every chain anyway: nothing to do.
  Result<void> request_notify_at(GuestMemory& memory, uint16_t idx);
  // Puts back the chain pop() returned last, unused: the next pop() takes it
  // again. Chains popped after it must have been put back first.
  void unpop(const DescriptorChain& chain);
  // Chains popped and not yet returned.
  uint32_t in_flight() const { return in_flight_count_; }

  // Returns a chain to the driver with `written` bytes written into it:
  // the used element, then a release fence, then the used index. Ring
  // mechanics only: it does not ask whether the device holds `head`.
  Result<void> add_used(GuestMemory& memory, uint16_t head, uint32_t written);
  // What devices call: the same for `chain`, after reporting the first
  // `written` bytes of its writable buffers as DMA (GuestMemory::note_dma_write).
  // A chain that is not in flight is a kInternal error (a device returning a
  // chain twice) and nothing is written.
  Result<void> add_used(GuestMemory& memory, const DescriptorChain& chain, uint32_t written);

  // After add_used: must the driver be interrupted? Honours used_event with
  // EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT without.
  Result<bool> needs_interrupt(const GuestMemory& memory);

  State state() const { return state_; }
  // A restored queue has nothing in flight.
  void restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  struct RawDescriptor {
    uint64_t address;
    uint32_t length;
    uint16_t flags;
    uint16_t next;
  };
  static_assert(sizeof(RawDescriptor) == 16);

  Result<DescriptorChain> walk_chain(const GuestMemory& memory, uint16_t head) const;
  Result<void> walk_indirect(const GuestMemory& memory, const RawDescriptor& indirect, uint16_t head,
                             std::vector<VirtioBuffer>& buffers, uint64_t& total) const;
  Result<void> append(const GuestMemory& memory, const RawDescriptor& d, uint16_t head,
                      std::vector<VirtioBuffer>& buffers, uint64_t& total) const;

  bool is_in_flight(uint16_t head) const { return in_flight_[head / 64] >> (head % 64) & 1; }
  void set_in_flight(uint16_t head, bool on);

  VirtqueueLayout layout_;
  bool event_idx_ = false;
  bool indirect_ = false;
  State state_;
  // One bit per descriptor head (size bits in all).
  std::vector<uint64_t> in_flight_;
  uint32_t in_flight_count_ = 0;
};

}  // namespace hostvisor
