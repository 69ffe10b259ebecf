#include "devices/virtio/net/virtio_net.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

using namespace virtio_net;
using net::kVnetHeaderSize;
using net::VirtioNetHeader;

VirtioNet::VirtioNet(std::unique_ptr<net::NetBackend> backend, VirtioNetOptions options)
    : VirtioDeviceCore(2, options.queue_size),
      backend_(std::move(backend)),
      options_(options),
      rx_packet_(net::kMaxPacketSize),
      tx_packet_(net::kMaxPacketSize) {
  if (options_.rate_bytes_per_second) {
    const uint64_t now = now_ns();
    // Capacity 0: the bucket's default burst (a tenth of a second, at least
    // one 64 KiB super-packet).
    rx_bucket_.emplace(*options_.rate_bytes_per_second, 0, now);
    tx_bucket_.emplace(*options_.rate_bytes_per_second, 0, now);
  }
}

uint64_t VirtioNet::now_ns() const {
  if (options_.clock_ns) return options_.clock_ns();
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

bool VirtioNet::take_tokens(std::optional<net::TokenBucket>& bucket, uint16_t queue, uint64_t bytes) {
  if (!bucket) return true;
  const uint64_t now = now_ns();
  if (bucket->try_consume(bytes, now)) return true;
  // The core's retry timer counts in milliseconds: round up, so the turn it
  // schedules finds the tokens there instead of spinning on a dry bucket.
  const uint64_t wait_ns = std::max<uint64_t>(bucket->ns_until_available(bytes, now), 1);
  const uint64_t wait_ms = std::min<uint64_t>((wait_ns + 999'999) / 1'000'000, 60'000);
  retry_later(queue, std::chrono::milliseconds(wait_ms));
  return false;
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
  read_config_bytes(c, offset, data);
}

Result<void> VirtioNet::on_activate() {
  mergeable_ = features() & virtio::feature_bit(kFeatureMergeableRxBuffers);
  negotiated_ = features();
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
      HV_LOG_WARN_LIMITED("virtio-net: receive offloads stay off: {}", r.error().message());
  }
  rx_stalled_ = false;
  rx_throttled_ = false;
  receive();
  update_interest_locked();
  return ok();
}

void VirtioNet::on_reset() {
  rx_chains_.clear();
  rx_length_ = 0;  // a half-delivered packet is lost, as on a real NIC reset
  negotiated_ = 0;
  if (backend_->supports_offloads() && (rx_offloads_.csum || rx_offloads_.tso4 || rx_offloads_.tso6)) {
    if (auto r = backend_->set_receive_offloads({}); !r)
      HV_LOG_WARN_LIMITED("virtio-net: turning receive offloads off: {}", r.error().message());
  }
  rx_offloads_ = {};
  rx_stalled_ = false;
  rx_throttled_ = false;
  // The core drops the activation after this: the backend is of no interest until the next one.
  if (std::exchange(last_interest_, false) && interest_callback_) interest_callback_(false);
}

void VirtioNet::serve_queue(uint16_t queue) {
  if (queue == kReceiveQueue) {
    rx_stalled_ = false;  // the driver posted buffers
    receive();
  } else if (queue == kTransmitQueue) {
    transmit();
  }
  update_interest_locked();
}

void VirtioNet::process_backend() {
  run_turn([this] {
    receive();
    update_interest_locked();
  });
}

bool VirtioNet::wants_backend_events() const {
  std::lock_guard lock(mutex_);
  return wants_events_locked();
}

// While throttled the backend's fd stays readable: watching it would spin the event loop.
bool VirtioNet::wants_events_locked() const {
  return serving(kReceiveQueue) && !backend_failed_ && !rx_stalled_ && !rx_throttled_;
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

std::string VirtioNet::format_stats(const Stats& s) {
  auto n = [](uint64_t v) { return std::to_string(v); };
  return "tx " + n(s.tx_packets) + " packets " + n(s.tx_bytes) + " bytes " + n(s.tx_dropped) + " dropped (" +
         n(s.tx_dropped_by_guest) + " malformed), rx " + n(s.rx_packets) + " packets " + n(s.rx_bytes) + " bytes " +
         n(s.rx_dropped) + " dropped (" + n(s.rx_dropped_by_guest) +
         " too big for the guest's buffers), rate limit waits tx " + n(s.tx_throttled) + " rx " + n(s.rx_throttled);
}

bool VirtioNet::hold_receive_chains(size_t count) {
  while (rx_chains_.size() < count) {
    auto chain = next_writable_chain(kReceiveQueue);
    if (!chain) return false;
    rx_chains_.push_back(std::move(*chain));
  }
  return true;
}

void VirtioNet::receive() {
  if (!serving(kReceiveQueue) || backend_failed_) return;
  rx_throttled_ = false;  // checked again below before the held packet goes
  for (;;) {
    if (rx_length_ == 0 && !rx_bucket_ && backend_->receives_in_place()) {
      // (Under a rate limit the packet's length must be known before it
      // lands in the guest's buffers: the copying path below.)
      const InPlace result = receive_in_place();
      if (result == InPlace::kHandled) {
        if (!running()) return;
        continue;
      }
      if (result != InPlace::kCannot) break;  // nothing waiting, or the backend failed
    }
    if (rx_length_ == 0) {
      // Read from the backend only with a guest buffer in hand, so packets
      // wait in the backend (not here) while the guest is not receiving.
      if (!hold_receive_chains(1)) {
        rx_stalled_ = running();
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
      if (chains == rx_chains_.size() && !hold_receive_chains(chains + 1)) {
        waiting = true;
        break;
      }
      room += rx_chains_[chains].writable_bytes();
      ++chains;
      if (room >= rx_length_) {
        fits = true;
        break;
      }
      if (!mergeable_ || chains >= queue_size(kReceiveQueue)) break;  // can never fit
    }
    if (!running()) return;
    if (waiting) {
      rx_stalled_ = true;  // the packet waits for the driver's next buffers (or the next turn)
      break;
    }
    if (!fits) {
      // Without mergeable buffers the first chain is too small; with them the
      // whole ring is. Drop the packet, keep the buffers for the next one.
      ++stats_.rx_dropped;
      ++stats_.rx_dropped_by_guest;
      rx_length_ = 0;
      continue;
    }
    // Tokens are taken only for a packet that goes now; a held packet keeps
    // its place and the backend is not read until the retry.
    if (!take_tokens(rx_bucket_, kReceiveQueue, rx_length_ - kVnetHeaderSize)) {
      rx_throttled_ = true;
      ++stats_.rx_throttled;
      break;
    }
    deliver_packet(chains, rx_header_);
    if (!running()) return;
  }
  release_receive_chains();
}

VirtioNet::InPlace VirtioNet::receive_in_place() {
  // Buffers for the largest packet: with mergeable buffers as many chains
  // as that takes, without them the first chain alone (a driver with TSO
  // posts 64 KiB "big packet" chains). Fewer: the copying path, which reads
  // the packet first and waits for the buffers it needs.
  uint64_t room = 0;
  size_t chains = 0;
  while (room < net::kMaxPacketSize) {
    if (chains == rx_chains_.size() && !hold_receive_chains(chains + 1)) return InPlace::kCannot;
    room += rx_chains_[chains].writable_bytes();
    ++chains;
    if (!mergeable_) break;
  }
  if (room < net::kMaxPacketSize) return InPlace::kCannot;

  // The header lands in rx_header_, to be checked before the guest sees
  // it; the frame lands in the guest's buffers, after the header's place.
  rx_iov_.clear();
  rx_iov_.push_back(iovec{&rx_header_, kVnetHeaderSize});
  uint64_t skip = kVnetHeaderSize, total = kVnetHeaderSize;
  for (size_t c = 0; c < chains && total < net::kMaxPacketSize; ++c) {
    for (const auto& buffer : rx_chains_[c].writable()) {
      if (total == net::kMaxPacketSize) break;
      if (skip >= buffer.length) {
        skip -= buffer.length;
        continue;
      }
      const uint64_t length = std::min<uint64_t>(buffer.length - skip, net::kMaxPacketSize - total);
      // A buffer outside RAM or across two regions: the copying path, which
      // reports the misuse (or writes piecewise).
      auto bytes = memory().slice(buffer.address + skip, length);
      if (!bytes || rx_iov_.size() == kMaxPacketSegments) return InPlace::kCannot;
      rx_iov_.push_back(iovec{bytes->data(), bytes->size()});
      total += length;
      skip = 0;
    }
  }

  auto got = backend_->receive_in_place(rx_iov_);
  if (!got) {
    HV_LOG_WARN("virtio-net: {} stopped receiving: {}", backend_->name(), got.error().message());
    backend_failed_ = true;
    return InPlace::kFailed;
  }
  if (!got->has_value()) return InPlace::kEmpty;
  const size_t length = **got;
  // Too short to hold a frame, or possibly cut: dropped, and the guest's
  // buffers (written but not returned) stay for the next packet.
  if (length <= kVnetHeaderSize || length >= total || !accept_receive_header(rx_header_)) {
    ++stats_.rx_dropped;
    return InPlace::kHandled;
  }
  size_t used = 0;
  for (uint64_t at = 0; at < length; ++used) at += rx_chains_[used].writable_bytes();
  VirtioNetHeader header = rx_header_;
  header.num_buffers = static_cast<uint16_t>(used);
  const auto header_bytes = std::span(reinterpret_cast<const uint8_t*>(&header), kVnetHeaderSize);
  for (size_t c = 0, written = 0; written < kVnetHeaderSize; ++c) {
    auto wrote = rx_chains_[c].write(memory(), 0, header_bytes.subspan(written));
    if (!wrote) {
      fail_guest_misuse(wrote.error());
      return InPlace::kHandled;
    }
    written += *wrote;
  }
  uint64_t at = 0;
  for (size_t i = 0; i < used; ++i) {
    DescriptorChain chain = std::move(rx_chains_.front());
    rx_chains_.pop_front();
    const uint64_t n = std::min<uint64_t>(chain.writable_bytes(), length - at);
    if (!complete(kReceiveQueue, chain, n)) return InPlace::kHandled;
    at += n;
  }
  ++stats_.rx_packets;
  stats_.rx_bytes += length - kVnetHeaderSize;
  return InPlace::kHandled;
}

void VirtioNet::release_receive_chains() {
  // The chains still held are the last ones popped, in order: put back
  // newest first, they are popped anew by the next pass. Between passes the
  // device then holds nothing the transport's saved queue state does not
  // describe (snapshots).
  while (!rx_chains_.empty()) {
    put_back(kReceiveQueue, rx_chains_.back());
    rx_chains_.pop_back();
  }
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

void VirtioNet::deliver_packet(size_t chains, VirtioNetHeader header) {
  // num_buffers: how many buffers the packet spans (1 without mergeable buffers).
  header.num_buffers = static_cast<uint16_t>(chains);
  std::memcpy(rx_packet_.data(), &header, kVnetHeaderSize);
  size_t at = 0;
  for (size_t i = 0; i < chains; ++i) {
    DescriptorChain chain = std::move(rx_chains_.front());
    rx_chains_.pop_front();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chain.writable_bytes(), rx_length_ - at));
    auto wrote = chain.write(memory(), 0, std::span<const uint8_t>(rx_packet_.data() + at, n));
    if (!wrote) return fail_guest_misuse(wrote.error());
    if (!complete(kReceiveQueue, chain, n)) return;
    at += n;
  }
  ++stats_.rx_packets;
  stats_.rx_bytes += rx_length_ - kVnetHeaderSize;
  rx_length_ = 0;
}

bool VirtioNet::gather_transmit_frame(const DescriptorChain& chain, VirtioNetHeader& header) {
  tx_iov_.clear();
  tx_iov_.push_back(iovec{&header, kVnetHeaderSize});
  uint64_t skip = kVnetHeaderSize;  // the guest's copy of the header is not sent
  for (const auto& buffer : chain.readable()) {
    if (skip >= buffer.length) {
      skip -= buffer.length;
      continue;
    }
    // A buffer outside RAM or across two regions takes the copying path,
    // which reports the misuse (or copies piecewise).
    auto bytes = memory().slice(buffer.address + skip, buffer.length - skip);
    if (!bytes || tx_iov_.size() == kMaxPacketSegments) return false;
    tx_iov_.push_back(iovec{bytes->data(), bytes->size()});
    skip = 0;
  }
  return true;
}

void VirtioNet::transmit() {
  while (auto chain = next_chain(kTransmitQueue)) {
    const uint64_t length = chain->readable_bytes();
    // A packet is the header and an Ethernet frame (14-byte MAC header at
    // least, 64 KiB at most). Anything else is dropped; the chain goes back.
    if (length < kVnetHeaderSize + 14 || length > net::kMaxPacketSize) {
      ++stats_.tx_dropped;
      ++stats_.tx_dropped_by_guest;
    } else {
      const uint64_t frame_bytes = length - kVnetHeaderSize;
      if (!take_tokens(tx_bucket_, kTransmitQueue, frame_bytes)) {
        // The chain stays the driver's until the retry: the guest sees a
        // busy wire, not a lost packet.
        put_back(kTransmitQueue, *chain);
        ++stats_.tx_throttled;
        return;
      }
      // The header is copied out: it is checked and rewritten here, and
      // the guest must not change it between the check and the send.
      VirtioNetHeader header;
      auto got = chain->read(memory(), 0, std::span(reinterpret_cast<uint8_t*>(&header), kVnetHeaderSize));
      if (!got) return fail_guest_misuse(got.error());
      if (!accept_transmit_header(header)) {
        ++stats_.tx_dropped;
        ++stats_.tx_dropped_by_guest;
      } else {
        // The frame goes to the backend straight from the guest's buffers
        // (the tap's writev is then its only copy); a chain that cannot be
        // gathered that way is copied once into tx_packet_.
        if (!gather_transmit_frame(*chain, header)) {
          got = chain->read(memory(), 0, std::span(tx_packet_.data(), length));
          if (!got) return fail_guest_misuse(got.error());
          std::memcpy(tx_packet_.data(), &header, kVnetHeaderSize);
          tx_iov_.assign(1, iovec{tx_packet_.data(), static_cast<size_t>(length)});
        }
        if (auto r = backend_->send(tx_iov_); r) {
          ++stats_.tx_packets;
          stats_.tx_bytes += frame_bytes;
        } else {
          // A host-side failure: the packet is lost, as on a congested wire.
          ++stats_.tx_dropped;
          if (r.error().code() != ErrorCode::kBusy)
            HV_LOG_DEBUG("virtio-net: {} dropped a packet: {}", backend_->name(), r.error().message());
        }
      }
    }
    if (!complete(kTransmitQueue, *chain, 0)) return;
  }
}

void VirtioNet::save_state(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  out.put_raw(options_.mac);
  // The backend's own state (the NAT's); a failure loses only that.
  auto backend = backend_->save_state();
  if (!backend) HV_LOG_WARN("virtio-net: {}: not saved: {}", backend_->name(), backend.error().message());
  out.put_bytes(backend ? *backend : std::vector<uint8_t>{});
}

Result<void> VirtioNet::restore_state(StateReader& in, uint32_t version) {
  net::MacAddress mac;
  in.get_raw(mac);
  const std::vector<uint8_t> backend = in.get_bytes(kMaxBackendState);
  HV_TRY(in.finish());
  if (mac[0] & 1) return Error(ErrorCode::kCorrupt, "virtio-net: the snapshot's MAC is a multicast address");
  HV_TRY(backend_->load_state(backend));
  set_mac(mac);
  return ok();
}

void VirtioNet::set_mac(const net::MacAddress& mac) {
  std::lock_guard lock(mutex_);
  options_.mac = mac;
}

}  // namespace hostvisor
