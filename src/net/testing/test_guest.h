// A guest's side of a NIC for tests and benchmarks: sends frames built by
// frames.h into a NetBackend and reads what comes back, answering ARP for
// its own address the way a guest's stack would. Also a minimal TCP
// endpoint (in-order data, cumulative ACKs) for checking streams through a
// NAT. Runs on the test's thread; the backend's own work runs elsewhere (its
// event loop).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>

#include "base/result.h"
#include "net/net_backend.h"
#include "net/testing/frames.h"

namespace hostvisor::net::testing {

using namespace std::chrono_literals;

class TestGuest {
 public:
  explicit TestGuest(NetBackend& backend, MacAddress mac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56});

  // Sends one frame behind a virtio_net_hdr_v1, plain unless given.
  Result<void> send(std::span<const uint8_t> frame, const VirtioNetHeader& header = {});
  // The first frame (earlier unmatched ones included) that `match` accepts,
  // waiting up to `timeout`. Frames that do not match are kept for later.
  std::optional<ParsedFrame> wait_for(const std::function<bool(const ParsedFrame&)>& match,
                                      std::chrono::milliseconds timeout = 5s);
  // Reads whatever is waiting without keeping it; returns how many frames.
  size_t drain();

  // DHCP DISCOVER, OFFER, REQUEST, ACK; on success address() and gateway()
  // are the lease's.
  Result<DhcpReply> lease();

  // Source: this guest; destination: `destination` through the gateway.
  Endpoints to(Ipv4Address destination) const { return {mac_, gateway_mac_, address_, destination}; }

  const MacAddress& mac() const { return mac_; }
  Ipv4Address address() const { return address_; }
  Ipv4Address gateway() const { return gateway_; }
  const MacAddress& gateway_mac() const { return gateway_mac_; }

 private:
  NetBackend& backend_;
  MacAddress mac_;
  Ipv4Address address_{}, gateway_{};
  MacAddress gateway_mac_ = kBroadcastMac;
  std::deque<ParsedFrame> backlog_;
  std::vector<uint8_t> buffer_;
};

// One TCP connection of the test guest: in-order data only, a fixed window.
class GuestTcp {
 public:
  GuestTcp(TestGuest& guest, Ipv4Address peer, uint16_t local_port, uint16_t peer_port)
      : guest_(guest), peer_(peer), local_port_(local_port), peer_port_(peer_port) {}

  // Active open: SYN, SYN-ACK, ACK. The returned frame is the SYN-ACK, or the RST that refused it.
  std::optional<ParsedFrame> connect();
  // Passive open on a SYN the guest received.
  bool accept(const ParsedFrame& syn);
  // Sends `data` in segments and waits until the peer acknowledged all of it.
  bool send(std::span<const uint8_t> data);
  // The same as one TCP segmentation super-packet (GSO TCPv4) of at most
  // 64 KiB, for the NIC to cut at `mss`.
  bool send_super_packet(std::span<const uint8_t> data, uint16_t mss);
  // Receives `length` bytes in order, acknowledging each segment.
  std::optional<Bytes> receive(size_t length, std::chrono::milliseconds timeout = 10s);
  // Active close: FIN, then waits for the peer's FIN and acknowledges it.
  bool close();

 private:
  bool is_mine(const ParsedFrame& f) const;
  Result<void> send_segment(uint8_t flags, std::span<const uint8_t> payload = {}, const VirtioNetHeader& header = {});
  bool wait_for_ack_of_all();

  TestGuest& guest_;
  Ipv4Address peer_;
  uint16_t local_port_, peer_port_;
  uint32_t snd_nxt_ = 0x1000, rcv_nxt_ = 0;
};

}  // namespace hostvisor::net::testing
