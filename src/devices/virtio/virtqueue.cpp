#include "devices/virtio/virtqueue.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <string>

#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

// Ring fields are little-endian (virtio 1.x); guest memory is read as host
// integers, which is only right on a little-endian host.
static_assert(std::endian::native == std::endian::little, "virtqueue code assumes a little-endian host");

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

Error guest_error(uint16_t head, const std::string& what) {
  return Error(ErrorCode::kGuest, "virtqueue chain at head " + std::to_string(head) + ": " + what +
                                      "; the driver is broken or hostile, the device needs a reset");
}

// Split ring layout (2.7): avail = flags, idx, ring[size], used_event;
// used = flags, idx, ring[size] of {id, len}, avail_event.
uint64_t avail_bytes(uint16_t size) { return 6 + 2ull * size; }
uint64_t used_bytes(uint16_t size) { return 6 + 8ull * size; }

}  // namespace

std::vector<DeviceMemoryAreas::Area> virtqueue_ring_areas(const VirtqueueLayout& layout) {
  const uint64_t size = layout.size;
  return {{layout.desc_table.value(), layout.desc_table.value() + virtio::kDescriptorSize * size},
          {layout.avail_ring.value(), layout.avail_ring.value() + 6 + 2 * size},
          {layout.used_ring.value(), layout.used_ring.value() + 6 + 8 * size}};
}

Result<Virtqueue> Virtqueue::create(const GuestMemory& memory, const VirtqueueLayout& layout, uint64_t features) {
  const uint16_t size = layout.size;
  if (size == 0 || !std::has_single_bit(size) || size > virtio::kMaxQueueSize)
    return Error(ErrorCode::kGuest, "virtqueue size " + std::to_string(size) + " is not a power of two up to 32768");
  if (layout.desc_table.value() % 16 || layout.avail_ring.value() % 2 || layout.used_ring.value() % 4)
    return Error(ErrorCode::kGuest, "virtqueue rings are misaligned (descriptor table " +
                                        hex(layout.desc_table.value()) + ", driver area " +
                                        hex(layout.avail_ring.value()) + ", device area " +
                                        hex(layout.used_ring.value()) + ")");
  if (!memory.contains(layout.desc_table, virtio::kDescriptorSize * size))
    return Error(ErrorCode::kGuest,
                 "virtqueue descriptor table at " + hex(layout.desc_table.value()) + " is not in guest RAM");
  if (!memory.contains(layout.avail_ring, avail_bytes(size)))
    return Error(ErrorCode::kGuest,
                 "virtqueue driver area at " + hex(layout.avail_ring.value()) + " is not in guest RAM");
  if (!memory.contains(layout.used_ring, used_bytes(size)))
    return Error(ErrorCode::kGuest,
                 "virtqueue device area at " + hex(layout.used_ring.value()) + " is not in guest RAM");
  Virtqueue q;
  q.layout_ = layout;
  q.event_idx_ = features & virtio::feature_bit(virtio::kFeatureEventIdx);
  q.indirect_ = features & virtio::feature_bit(virtio::kFeatureIndirectDesc);
  q.in_flight_.assign((size + 63) / 64, 0);
  return q;
}

Result<std::optional<DescriptorChain>> Virtqueue::pop(GuestMemory& memory) {
  const uint16_t size = layout_.size;
  if (size == 0) return Error(ErrorCode::kInternal, "virtqueue used before it was set up");
  const uint16_t avail_idx = HV_TRY(memory.read_obj<uint16_t>(layout_.avail_ring + 2));
  // The ring entries we are about to read were written before idx.
  std::atomic_thread_fence(std::memory_order_acquire);
  const uint16_t pending = static_cast<uint16_t>(avail_idx - state_.next_avail);
  if (pending > size)
    return Error(ErrorCode::kGuest, "virtqueue available index " + std::to_string(avail_idx) + " is " +
                                        std::to_string(pending) + " entries ahead of the device (queue size " +
                                        std::to_string(size) + "); the device needs a reset");
  if (pending == 0) return std::optional<DescriptorChain>();

  const uint64_t slot = state_.next_avail % size;
  const uint16_t head = HV_TRY(memory.read_obj<uint16_t>(layout_.avail_ring + 4 + 2 * slot));
  if (head < size && is_in_flight(head))
    return guest_error(head, "head was made available again while the device still holds it");
  DescriptorChain chain = HV_TRY(walk_chain(memory, head));
  set_in_flight(head, true);
  ++state_.next_avail;
  if (event_idx_) {
    // avail_event: notify us once the driver makes entry next_avail available.
    HV_TRY(memory.write_obj<uint16_t>(layout_.used_ring + 4 + 8ull * size, state_.next_avail));
  }
  return std::optional<DescriptorChain>(std::move(chain));
}

Result<bool> Virtqueue::has_available(const GuestMemory& memory) const {
  if (layout_.size == 0) return false;
  const uint16_t avail_idx = HV_TRY(memory.read_obj<uint16_t>(layout_.avail_ring + 2));
  return avail_idx != state_.next_avail;
}

Result<uint16_t> Virtqueue::avail_idx(const GuestMemory& memory) const {
  if (layout_.size == 0) return Error(ErrorCode::kInternal, "virtqueue: not set up");
  return memory.read_obj<uint16_t>(layout_.avail_ring + 2);
}

Result<void> Virtqueue::request_notify_at(GuestMemory& memory, uint16_t idx) {
  if (layout_.size == 0 || !event_idx_) return ok();
  return memory.write_obj<uint16_t>(layout_.used_ring + 4 + 8ull * layout_.size, idx);
}

void Virtqueue::unpop(const DescriptorChain& chain) {
  if (chain.head() >= layout_.size || !is_in_flight(chain.head())) return;
  set_in_flight(chain.head(), false);
  --state_.next_avail;
}

void Virtqueue::restore(const State& state) {
  state_ = state;
  std::fill(in_flight_.begin(), in_flight_.end(), 0);
  in_flight_count_ = 0;
}

void Virtqueue::set_in_flight(uint16_t head, bool on) {
  const uint64_t bit = uint64_t{1} << (head % 64);
  uint64_t& word = in_flight_[head / 64];
  if (bool(word & bit) == on) return;
  word ^= bit;
  if (on) {
    ++in_flight_count_;
  } else {
    --in_flight_count_;
  }
}

Result<DescriptorChain> Virtqueue::walk_chain(const GuestMemory& memory, uint16_t head) const {
  const uint16_t size = layout_.size;
  if (head >= size) return guest_error(head, "head index is outside the descriptor table of " + std::to_string(size));
  std::vector<VirtioBuffer> buffers;
  uint64_t total = 0;
  uint16_t index = head;
  for (uint32_t visited = 0;; ++visited) {
    // A chain visits each descriptor at most once, so more than `size` steps is a loop.
    if (visited >= size) return guest_error(head, "chain is longer than the queue size (a loop)");
    const RawDescriptor d =
        HV_TRY(memory.read_obj<RawDescriptor>(layout_.desc_table + virtio::kDescriptorSize * index));
    if (d.flags & virtio::kDescFlagIndirect) {
      HV_TRY(walk_indirect(memory, d, head, buffers, total));
      break;
    }
    HV_TRY(append(memory, d, head, buffers, total));
    if (!(d.flags & virtio::kDescFlagNext)) break;
    if (d.next >= size)
      return guest_error(head, "next index " + std::to_string(d.next) + " is outside the descriptor table");
    index = d.next;
  }
  return DescriptorChain(head, std::move(buffers));
}

Result<void> Virtqueue::walk_indirect(const GuestMemory& memory, const RawDescriptor& indirect, uint16_t head,
                                      std::vector<VirtioBuffer>& buffers, uint64_t& total) const {
  if (!indirect_) return guest_error(head, "indirect descriptor used without VIRTIO_F_INDIRECT_DESC");
  if (indirect.flags & virtio::kDescFlagNext) return guest_error(head, "descriptor has both INDIRECT and NEXT set");
  if (indirect.length == 0 || indirect.length % virtio::kDescriptorSize != 0)
    return guest_error(
        head, "indirect table length " + std::to_string(indirect.length) + " is not a non-zero multiple of 16");
  const uint32_t count = indirect.length / virtio::kDescriptorSize;
  if (count > kMaxIndirectDescriptors)
    return guest_error(head, "indirect table of " + std::to_string(count) + " descriptors exceeds the limit of " +
                                 std::to_string(kMaxIndirectDescriptors));
  const GuestAddress table(indirect.address);
  if (!memory.contains(table, indirect.length))
    return guest_error(head, "indirect table at " + hex(indirect.address) + " is not in guest RAM");
  uint32_t index = 0;
  for (uint32_t visited = 0;; ++visited) {
    if (visited >= count) return guest_error(head, "indirect chain is longer than its table (a loop)");
    const RawDescriptor d = HV_TRY(memory.read_obj<RawDescriptor>(table + virtio::kDescriptorSize * index));
    if (d.flags & virtio::kDescFlagIndirect) return guest_error(head, "nested indirect table");
    HV_TRY(append(memory, d, head, buffers, total));
    if (!(d.flags & virtio::kDescFlagNext)) break;
    if (d.next >= count)
      return guest_error(
          head, "indirect next index " + std::to_string(d.next) + " is outside its table of " + std::to_string(count));
    index = d.next;
  }
  return ok();
}

Result<void> Virtqueue::append(const GuestMemory& memory, const RawDescriptor& d, uint16_t head,
                               std::vector<VirtioBuffer>& buffers, uint64_t& total) const {
  const bool writable = d.flags & virtio::kDescFlagWrite;
  if (!writable && !buffers.empty() && buffers.back().device_writable)
    return guest_error(head, "device-readable buffer after a device-writable one");
  if (buffers.size() >= layout_.size + kMaxIndirectDescriptors)
    return guest_error(head, "chain has too many descriptors");
  // Zero-length buffers carry nothing; their address is never used.
  if (d.length != 0 && !memory.contains(GuestAddress(d.address), d.length))
    return guest_error(head, "buffer [" + hex(d.address) + ", +" + hex(d.length) + ") is not in guest RAM");
  total += d.length;  // at most ~33k * 4 GiB: cannot overflow 64 bits
  if (total > kMaxChainBytes)
    return guest_error(head, "buffers add up to more than " + std::to_string(kMaxChainBytes >> 20) + " MiB");
  buffers.push_back(VirtioBuffer{GuestAddress(d.address), d.length, writable});
  return ok();
}

Result<void> Virtqueue::add_used(GuestMemory& memory, uint16_t head, uint32_t written) {
  const uint16_t size = layout_.size;
  if (size == 0) return Error(ErrorCode::kInternal, "virtqueue used before it was set up");
  if (head >= size)
    return Error(ErrorCode::kInternal,
                 "returning descriptor head " + std::to_string(head) + " that is outside the queue");
  const uint64_t slot = state_.next_used % size;
  struct UsedElement {
    uint32_t id;
    uint32_t len;
  } element{head, written};
  HV_TRY(memory.write_obj(layout_.used_ring + 4 + 8 * slot, element));
  // The driver must see the element before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  ++state_.next_used;
  HV_TRY(memory.write_obj<uint16_t>(layout_.used_ring + 2, state_.next_used));
  set_in_flight(head, false);
  return ok();
}

Result<void> Virtqueue::add_used(GuestMemory& memory, const DescriptorChain& chain, uint32_t written) {
  if (chain.head() >= layout_.size || !is_in_flight(chain.head()))
    return Error(ErrorCode::kInternal,
                 "returning descriptor head " + std::to_string(chain.head()) + " that the device does not hold");
  uint64_t left = written;
  for (const VirtioBuffer& b : chain.writable()) {
    if (left == 0) break;
    const uint64_t n = std::min<uint64_t>(left, b.length);
    memory.note_dma_write(b.address, n);
    left -= n;
  }
  return add_used(memory, chain.head(), written);
}

Result<bool> Virtqueue::needs_interrupt(const GuestMemory& memory) {
  // Our used index store must be visible before we read the driver's
  // suppression fields, or we could miss its latest request (2.7.10).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) {
    const uint16_t flags = HV_TRY(memory.read_obj<uint16_t>(layout_.avail_ring));
    return !(flags & virtio::kAvailFlagNoInterrupt);
  }
  const uint16_t used_event = HV_TRY(memory.read_obj<uint16_t>(layout_.avail_ring + 4 + 2ull * layout_.size));
  const uint16_t old_idx = state_.signalled_used;
  const bool valid = state_.signalled_used_valid;
  state_.signalled_used = state_.next_used;
  state_.signalled_used_valid = true;
  // The first interrupt after (re)start is always sent: we have no record of
  // what the driver already saw.
  return !valid || virtio_need_event(used_event, state_.next_used, old_idx);
}

void Virtqueue::encode_state(StateWriter& out, const State& s) {
  out.put(s.next_avail);
  out.put(s.next_used);
  out.put(s.signalled_used);
  out.put_bool(s.signalled_used_valid);
}

Virtqueue::State Virtqueue::decode_state(StateReader& in) {
  State s;
  s.next_avail = in.get<uint16_t>();
  s.next_used = in.get<uint16_t>();
  s.signalled_used = in.get<uint16_t>();
  s.signalled_used_valid = in.get_bool();
  return s;
}

}  // namespace hostvisor
