#include "net/testing/test_guest.h"

#include <poll.h>

#include <cstring>

namespace hostvisor::net::testing {

TestGuest::TestGuest(NetBackend& backend, MacAddress mac) : backend_(backend), mac_(mac), buffer_(kMaxPacketSize) {}

Result<void> TestGuest::send(std::span<const uint8_t> frame, const VirtioNetHeader& header) {
  const iovec packet[] = {{const_cast<VirtioNetHeader*>(&header), sizeof header},
                          {const_cast<uint8_t*>(frame.data()), frame.size()}};
  return backend_.send(packet);
}

std::optional<ParsedFrame> TestGuest::wait_for(const std::function<bool(const ParsedFrame&)>& match,
                                               std::chrono::milliseconds timeout) {
  for (auto it = backlog_.begin(); it != backlog_.end(); ++it) {
    if (match(*it)) {
      ParsedFrame found = std::move(*it);
      backlog_.erase(it);
      return found;
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto got = backend_.receive(buffer_);
    if (!got.ok()) return std::nullopt;
    if (!got->has_value()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{backend_.receive_fd(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()) + 1);
      continue;
    }
    const size_t length = **got;
    if (length < kVnetHeaderSize) continue;
    auto frame = parse_frame(std::span(buffer_.data() + kVnetHeaderSize, length - kVnetHeaderSize));
    if (!frame) continue;
    if (frame->ether_type == kEtherTypeArp && frame->arp_operation == 1 && frame->arp_target == address_ &&
        address_.value != 0) {
      (void)send(arp_frame(2, mac_, address_, frame->arp_sender_mac, frame->arp_sender, frame->source_mac));
      continue;
    }
    if (match(*frame)) return frame;
    backlog_.push_back(std::move(*frame));
  }
}

size_t TestGuest::drain() {
  size_t n = 0;
  for (;;) {
    auto got = backend_.receive(buffer_);
    if (!got.ok() || !got->has_value()) return n;
    ++n;
  }
}

Result<DhcpReply> TestGuest::lease() {
  const uint32_t transaction = 0x1234abcd;
  auto reply_of_type = [&](uint8_t type) -> std::optional<std::pair<DhcpReply, MacAddress>> {
    std::optional<DhcpReply> reply;
    auto frame = wait_for([&](const ParsedFrame& f) {
      if (f.protocol != kProtocolUdp || f.destination_port != 68) return false;
      reply = parse_dhcp(f.payload);
      return reply && reply->transaction == transaction && reply->message_type == type;
    });
    if (!frame) return std::nullopt;
    return std::pair{*reply, frame->source_mac};
  };
  HV_TRY(send(dhcp_frame(mac_, kDhcpDiscover, transaction)));
  auto offer = reply_of_type(kDhcpOffer);
  if (!offer) return Error(ErrorCode::kNotFound, "no DHCP OFFER");
  HV_TRY(send(dhcp_frame(mac_, kDhcpRequest, transaction, offer->first.your_address, offer->first.server)));
  auto ack = reply_of_type(kDhcpAck);
  if (!ack) return Error(ErrorCode::kNotFound, "no DHCP ACK");
  address_ = ack->first.your_address;
  gateway_ = ack->first.router.value_or(Ipv4Address{});
  gateway_mac_ = ack->second;
  return ack->first;
}

bool GuestTcp::is_mine(const ParsedFrame& f) const {
  return f.protocol == kProtocolTcp && f.source == peer_ && f.source_port == peer_port_ &&
         f.destination_port == local_port_;
}

Result<void> GuestTcp::send_segment(uint8_t flags, std::span<const uint8_t> payload, const VirtioNetHeader& header) {
  TcpSegment s;
  s.source_port = local_port_;
  s.destination_port = peer_port_;
  s.seq = snd_nxt_;
  s.ack = rcv_nxt_;
  s.flags = flags;
  if (flags & kTcpSyn) s.mss = 1460;
  s.payload.assign(payload.begin(), payload.end());
  return guest_.send(tcp_frame(guest_.to(peer_), s), header);
}

std::optional<ParsedFrame> GuestTcp::connect() {
  if (!send_segment(kTcpSyn).ok()) return std::nullopt;
  auto reply = guest_.wait_for([&](const ParsedFrame& f) {
    return is_mine(f) && ((f.tcp.flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck) || (f.tcp.flags & kTcpRst));
  });
  if (!reply || (reply->tcp.flags & kTcpRst)) return reply;
  ++snd_nxt_;
  rcv_nxt_ = reply->tcp.seq + 1;
  if (!send_segment(kTcpAck).ok()) return std::nullopt;
  return reply;
}

bool GuestTcp::accept(const ParsedFrame& syn) {
  rcv_nxt_ = syn.tcp.seq + 1;
  if (!send_segment(kTcpSyn | kTcpAck).ok()) return false;
  ++snd_nxt_;
  return guest_
      .wait_for([&](const ParsedFrame& f) { return is_mine(f) && (f.tcp.flags & kTcpAck) && f.tcp.ack == snd_nxt_; })
      .has_value();
}

bool GuestTcp::send(std::span<const uint8_t> data) {
  constexpr size_t kSegment = 1400;
  for (size_t at = 0; at < data.size(); at += kSegment) {
    const auto part = data.subspan(at, std::min(kSegment, data.size() - at));
    if (!send_segment(kTcpAck | kTcpPsh, part).ok()) return false;
    snd_nxt_ += static_cast<uint32_t>(part.size());
  }
  return wait_for_ack_of_all();
}

bool GuestTcp::send_super_packet(std::span<const uint8_t> data, uint16_t mss) {
  const VirtioNetHeader header = tso4_header(mss);
  if (!send_segment(kTcpAck | kTcpPsh, data, header).ok()) return false;
  snd_nxt_ += static_cast<uint32_t>(data.size());
  return wait_for_ack_of_all();
}

bool GuestTcp::wait_for_ack_of_all() {
  return guest_
      .wait_for([&](const ParsedFrame& f) {
        return is_mine(f) && (f.tcp.flags & kTcpAck) && static_cast<int32_t>(f.tcp.ack - snd_nxt_) >= 0;
      })
      .has_value();
}

std::optional<Bytes> GuestTcp::receive(size_t length, std::chrono::milliseconds timeout) {
  Bytes out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < length) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto segment = guest_.wait_for([&](const ParsedFrame& f) { return is_mine(f) && !f.payload.empty(); }, left);
    if (!segment) return std::nullopt;
    if (segment->tcp.seq == rcv_nxt_ && segment->checksums_ok) {
      out.insert(out.end(), segment->payload.begin(), segment->payload.end());
      rcv_nxt_ += static_cast<uint32_t>(segment->payload.size());
    }
    if (!send_segment(kTcpAck).ok()) return std::nullopt;  // also re-acknowledges a duplicate
  }
  return out;
}

bool GuestTcp::close() {
  if (!send_segment(kTcpFin | kTcpAck).ok()) return false;
  ++snd_nxt_;
  auto fin = guest_.wait_for([&](const ParsedFrame& f) { return is_mine(f) && (f.tcp.flags & kTcpFin); });
  if (!fin) return false;
  rcv_nxt_ = fin->tcp.seq + static_cast<uint32_t>(fin->payload.size()) + 1;
  return send_segment(kTcpAck).ok();
}

}  // namespace hostvisor::net::testing
