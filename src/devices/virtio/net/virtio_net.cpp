#include "devices/virtio/net/virtio_net.h"

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

using namespace virtio_net;
using net::kVnetHeaderSize;
using net::VirtioNetHeader;

VirtioNet::VirtioNet(std::unique_ptr<net::NetBackend> backend, VirtioNetOptions options)
    : backend_(std::move(backend)),
      options_(options),
      rx_packet_(net::kMaxPacketSize),
      tx_packet_(net::kMaxPacketSize) {
  if (options_.queue_size == 0 || (options_.queue_size & (options_.queue_size - 1)) ||
      options_.queue_size > virtio::kMaxQueueSize)
    options_.queue_size = 256;
}

uint32_t VirtioNet::device_type() const { return virtio::kDeviceNet; }

uint64_t VirtioNet::device_features() const {
  uint64_t f = virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx) |
               virtio::feature_bit(kFeatureMac) | virtio::feature_bit(kFeatureStatus) |
               virtio::feature_bit(kFeatureMergeableRxBuffers);
  if (backend_->supports_offloads()) {
    for (unsigned bit : {kFeatureCsum, kFeatureGuestCsum, kFeatureGuestTso4, kFeatureGuestTso6, kFeatureGuestEcn,
                         kFeatureHostTso4, kFeatureHostTso6, kFeatureHostEcn})
      f |= virtio::feature_bit(bit);
  }
  return f;
}

void VirtioNet::read_config(uint64_t offset, std::span<uint8_t> data) {
  Config c{};
  std::memcpy(c.mac, options_.mac.data(), sizeof c.mac);
  c.status = kStatusLinkUp;
  c.max_virtqueue_pairs = 1;
  c.mtu = static_cast<uint16_t>(std::min<uint32_t>(backend_->mtu(), 0xffff));
  const auto* bytes = reinterpret_cast<const uint8_t*>(&c);
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < sizeof c ? bytes[offset + i] : 0;
}

Result<void> VirtioNet::activate(const VirtioActivation& activation) {
  if (!activation.memory || !activation.interrupt || activation.queues.size() != 2 || activation.enabled.size() != 2)
    return Error(ErrorCode::kInternal, "virtio-net activated without its two queues");
  std::lock_guard lock(mutex_);
  active_ = activation;
  mergeable_ = activation.features & virtio::feature_bit(kFeatureMergeableRxBuffers);
  negotiated_ = activation.features;
  rx_offloads_ = {};
  if (backend_->supports_offloads()) {
    auto has = [&](unsigned bit) { return (negotiated_ & virtio::feature_bit(bit)) != 0; };
    // TSO toward the guest needs its checksum offload too (5.1.3.1).
    net::ReceiveOffloads wanted;
    wanted.csum = has(kFeatureGuestCsum);
    wanted.tso4 = wanted.csum && has(kFeatureGuestTso4);
    wanted.tso6 = wanted.csum && has(kFeatureGuestTso6);
    wanted.ecn = (wanted.tso4 || wanted.tso6) && has(kFeatureGuestEcn);
    if (auto r = backend_->set_receive_offloads(wanted); r)
      rx_offloads_ = wanted;
    else
      HV_LOG_WARN("virtio-net: receive offloads stay off: {}", r.error().message());
  }
  failed_ = false;
  rx_stalled_ = false;
  receive_locked();
  update_interest_locked();
  return ok();
}

void VirtioNet::reset() {
  std::lock_guard lock(mutex_);
  active_.reset();
  rx_chains_.clear();
  rx_length_ = 0;  // a half-delivered packet is lost, as on a real NIC reset
  failed_ = false;
  negotiated_ = 0;
  if (backend_->supports_offloads() && (rx_offloads_.csum || rx_offloads_.tso4 || rx_offloads_.tso6)) {
    if (auto r = backend_->set_receive_offloads({}); !r)
      HV_LOG_WARN("virtio-net: turning receive offloads off: {}", r.error().message());
  }
  rx_offloads_ = {};
  rx_stalled_ = false;
  update_interest_locked();
}

Result<void> VirtioNet::process_queue(uint16_t queue) {
  std::lock_guard lock(mutex_);
  if (queue == kReceiveQueue) {
    rx_stalled_ = false;  // the driver posted buffers
    receive_locked();
  } else if (queue == kTransmitQueue) {
    transmit_locked();
  }
  update_interest_locked();
  return ok();
}

void VirtioNet::process_backend() {
  std::lock_guard lock(mutex_);
  receive_locked();
  update_interest_locked();
}

bool VirtioNet::wants_backend_events() const {
  std::lock_guard lock(mutex_);
  return wants_events_locked();
}

bool VirtioNet::wants_events_locked() const {
  return active_ && !failed_ && !backend_failed_ && !rx_stalled_ && active_->enabled[kReceiveQueue];
}

void VirtioNet::set_backend_interest_callback(std::function<void(bool)> callback) {
  std::lock_guard lock(mutex_);
  interest_callback_ = std::move(callback);
  last_interest_ = wants_events_locked();
  if (interest_callback_) interest_callback_(last_interest_);
}

void VirtioNet::update_interest_locked() {
  const bool now = wants_events_locked();
  if (now == last_interest_) return;
  last_interest_ = now;
  if (interest_callback_) interest_callback_(now);
}

VirtioNet::Stats VirtioNet::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void VirtioNet::fail_locked(const Error& error) {
  failed_ = true;
  rx_chains_.clear();
  active_->interrupt->signal_needs_reset(error.with_context("virtio-net"));
}

bool VirtioNet::hold_receive_chains_locked(size_t count) {
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[kReceiveQueue];
  while (rx_chains_.size() < count) {
    auto popped = q.pop(memory);
    if (!popped) {
      fail_locked(popped.error());
      return false;
    }
    if (!popped->has_value()) return false;
    if ((*popped)->writable_bytes() == 0) {
      fail_locked(Error(ErrorCode::kGuest, "receive buffer at descriptor " + std::to_string((*popped)->head()) +
                                               " is not device-writable; the driver is broken or hostile"));
      return false;
    }
    rx_chains_.push_back(std::move(**popped));
  }
  return true;
}

void VirtioNet::receive_locked() {
  if (!active_ || failed_ || backend_failed_ || !active_->enabled[kReceiveQueue]) return;
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[kReceiveQueue];
  bool used = false;
  for (;;) {
    if (rx_length_ == 0) {
      // Read from the backend only with a guest buffer in hand, so packets
      // wait in the backend (not here) while the guest is not receiving.
      if (!hold_receive_chains_locked(1)) {
        rx_stalled_ = !failed_;
        break;
      }
      auto got = backend_->receive(rx_packet_);
      if (!got) {
        HV_LOG_WARN("virtio-net: {} stopped receiving: {}", backend_->name(), got.error().message());
        backend_failed_ = true;
        break;
      }
      if (!got->has_value()) break;
      const size_t length = **got;
      // Too short to hold a frame, or cut at the buffer size: dropped.
      if (length <= kVnetHeaderSize || length >= rx_packet_.size()) {
        ++stats_.rx_dropped;
        continue;
      }
      std::memcpy(&rx_header_, rx_packet_.data(), kVnetHeaderSize);
      if (!accept_receive_header(rx_header_)) {
        ++stats_.rx_dropped;
        continue;
      }
      rx_length_ = length;
    }
    // Find the chains the packet needs: one without mergeable buffers, as
    // many as its length takes with them.
    size_t chains = 0;
    uint64_t room = 0;
    bool fits = false;
    bool waiting = false;
    for (;;) {
      if (chains == rx_chains_.size() && !hold_receive_chains_locked(chains + 1)) {
        waiting = true;
        break;
      }
      room += rx_chains_[chains].writable_bytes();
      ++chains;
      if (room >= rx_length_) {
        fits = true;
        break;
      }
      if (!mergeable_ || chains >= q.size()) break;  // can never fit
    }
    if (failed_) return;
    if (waiting) {
      rx_stalled_ = true;  // the packet waits for the driver's next buffers
      break;
    }
    if (!fits) {
      // Without mergeable buffers the first chain is too small; with them the
      // whole ring is. Drop the packet, keep the buffers for the next one.
      ++stats_.rx_dropped;
      rx_length_ = 0;
      continue;
    }
    deliver_packet_locked(chains, rx_header_);
    if (failed_) return;
    used = true;
  }
  release_receive_chains_locked();
  if (used) {
    auto notify = q.needs_interrupt(memory);
    if (!notify || *notify) active_->interrupt->signal_used(kReceiveQueue);
  }
}

void VirtioNet::release_receive_chains_locked() {
  // The chains still held are the last ones popped, in order, so stepping the
  // queue's next_avail back by their count makes them available again: the
  // next pass pops them anew. Between passes the device then holds nothing
  // the transport's saved queue state does not describe (snapshots).
  if (rx_chains_.empty()) return;
  Virtqueue& q = active_->queues[kReceiveQueue];
  Virtqueue::State state = q.state();
  state.next_avail = static_cast<uint16_t>(state.next_avail - rx_chains_.size());
  q.restore(state);
  rx_chains_.clear();
}

bool VirtioNet::accept_receive_header(VirtioNetHeader& header) const {
  const uint8_t gso = header.gso_type & ~net::kGsoEcn;
  if (header.gso_type != net::kGsoNone) {
    if (gso == net::kGsoTcpV4 && !rx_offloads_.tso4) return false;
    if (gso == net::kGsoTcpV6 && !rx_offloads_.tso6) return false;
    if (gso != net::kGsoTcpV4 && gso != net::kGsoTcpV6) return false;
    if ((header.gso_type & net::kGsoEcn) && !rx_offloads_.ecn) return false;
  }
  if (!rx_offloads_.csum) {
    // 5.1.6.4.1: without GUEST_CSUM the flags are zero and the packet fully checksummed.
    if (header.flags & net::kHeaderNeedsCsum) return false;
    header.flags = 0;
  }
  return true;
}

bool VirtioNet::accept_transmit_header(VirtioNetHeader& header) const {
  auto has = [&](unsigned bit) { return (negotiated_ & virtio::feature_bit(bit)) != 0; };
  if (!has(kFeatureCsum) || !backend_->supports_offloads()) {
    // No offloads: whatever the guest wrote, the backend gets a plain header.
    header = VirtioNetHeader{};
    return true;
  }
  header.num_buffers = 0;
  const uint8_t gso = header.gso_type & ~net::kGsoEcn;
  if (header.gso_type == net::kGsoNone) return true;
  if (gso == net::kGsoTcpV4 && !has(kFeatureHostTso4)) return false;
  if (gso == net::kGsoTcpV6 && !has(kFeatureHostTso6)) return false;
  if (gso != net::kGsoTcpV4 && gso != net::kGsoTcpV6) return false;
  if ((header.gso_type & net::kGsoEcn) && !has(kFeatureHostEcn)) return false;
  // The host kernel validates the rest (csum_start/offset, hdr_len, gso_size)
  // and refuses a bad header, which drops the packet.
  return true;
}

void VirtioNet::deliver_packet_locked(size_t chains, VirtioNetHeader header) {
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[kReceiveQueue];
  // num_buffers: how many buffers the packet spans (1 without mergeable buffers).
  header.num_buffers = static_cast<uint16_t>(chains);
  std::memcpy(rx_packet_.data(), &header, kVnetHeaderSize);
  size_t at = 0;
  for (size_t i = 0; i < chains; ++i) {
    DescriptorChain chain = std::move(rx_chains_.front());
    rx_chains_.pop_front();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chain.writable_bytes(), rx_length_ - at));
    auto wrote = chain.write(memory, 0, std::span<const uint8_t>(rx_packet_.data() + at, n));
    if (!wrote) return fail_locked(wrote.error());
    if (auto r = q.add_used(memory, chain, static_cast<uint32_t>(n)); !r) return fail_locked(r.error());
    at += n;
  }
  ++stats_.rx_packets;
  rx_length_ = 0;
}

void VirtioNet::transmit_locked() {
  if (!active_ || failed_ || !active_->enabled[kTransmitQueue]) return;
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[kTransmitQueue];
  bool used = false;
  for (;;) {
    auto popped = q.pop(memory);
    if (!popped) return fail_locked(popped.error());
    if (!popped->has_value()) break;
    const DescriptorChain& chain = **popped;
    const uint64_t length = chain.readable_bytes();
    // A packet is the header and an Ethernet frame (14-byte MAC header at
    // least, 64 KiB at most). Anything else is dropped; the chain goes back.
    if (length < kVnetHeaderSize + 14 || length > net::kMaxPacketSize) {
      ++stats_.tx_dropped;
    } else {
      auto got = chain.read(memory, 0, std::span(tx_packet_.data(), length));
      if (!got) return fail_locked(got.error());
      VirtioNetHeader header;
      std::memcpy(&header, tx_packet_.data(), kVnetHeaderSize);
      const bool accepted = accept_transmit_header(header);
      std::memcpy(tx_packet_.data(), &header, kVnetHeaderSize);
      iovec iov{tx_packet_.data(), static_cast<size_t>(length)};
      if (!accepted) {
        ++stats_.tx_dropped;
      } else if (auto r = backend_->send({&iov, 1}); r) {
        ++stats_.tx_packets;
      } else {
        ++stats_.tx_dropped;
        if (r.error().code() != ErrorCode::kBusy)
          HV_LOG_DEBUG("virtio-net: {} dropped a packet: {}", backend_->name(), r.error().message());
      }
    }
    if (auto r = q.add_used(memory, chain, 0); !r) return fail_locked(r.error());
    used = true;
  }
  if (used) {
    auto notify = q.needs_interrupt(memory);
    if (!notify || *notify) active_->interrupt->signal_used(kTransmitQueue);
  }
}

}  // namespace hostvisor
