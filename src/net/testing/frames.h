// Ethernet frames as a guest's network stack would send them (ARP, IPv4 with
// ICMP echo, UDP, TCP, DHCP), and a parser for the frames that come back.
// For the tests and the benchmark: the side of a NAT a guest sees,
// without a guest.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "net/ipv4_address.h"
#include "net/mac_address.h"
#include "net/net_backend.h"

namespace hostvisor::net::testing {

using Bytes = std::vector<uint8_t>;

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint8_t kProtocolIcmp = 1;
inline constexpr uint8_t kProtocolTcp = 6;
inline constexpr uint8_t kProtocolUdp = 17;
inline constexpr MacAddress kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// TCP flags.
inline constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08, kTcpAck = 0x10;

// DHCP message types (RFC 2132, option 53).
inline constexpr uint8_t kDhcpDiscover = 1, kDhcpOffer = 2, kDhcpRequest = 3, kDhcpAck = 5;

struct Endpoints {
  MacAddress source_mac{};
  MacAddress destination_mac{};
  Ipv4Address source{};
  Ipv4Address destination{};
};

struct TcpSegment {
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 65535;
  std::optional<uint16_t> mss;          // an MSS option (with SYN)
  std::optional<uint8_t> window_scale;  // a window scale option (with SYN)
  Bytes payload;
};

Bytes arp_frame(uint16_t operation, const MacAddress& sender_mac, Ipv4Address sender, const MacAddress& target_mac,
                Ipv4Address target, const MacAddress& destination_mac);
// An IPv4 packet in an Ethernet frame; the header checksum is filled in.
Bytes ipv4_frame(const Endpoints& e, uint8_t protocol, std::span<const uint8_t> payload, uint16_t id = 1);
Bytes udp_frame(const Endpoints& e, uint16_t source_port, uint16_t destination_port, std::span<const uint8_t> payload);
Bytes tcp_frame(const Endpoints& e, const TcpSegment& segment);
// The virtio-net header a driver with TSO writes for a tcp_frame() super-packet
// (Ethernet, IPv4 and TCP headers without options): cut at `mss`, the TCP
// checksum partial.
VirtioNetHeader tso4_header(uint16_t mss = 1448);
Bytes icmp_echo_frame(const Endpoints& e, uint16_t id, uint16_t sequence, std::span<const uint8_t> payload);
// A DHCP DISCOVER or REQUEST from `mac` (broadcast, from 0.0.0.0:68).
Bytes dhcp_frame(const MacAddress& mac, uint8_t message_type, uint32_t transaction,
                 std::optional<Ipv4Address> requested = std::nullopt, std::optional<Ipv4Address> server = std::nullopt);

struct ParsedFrame {
  MacAddress destination_mac{};
  MacAddress source_mac{};
  uint16_t ether_type = 0;
  // ARP
  uint16_t arp_operation = 0;
  MacAddress arp_sender_mac{};
  Ipv4Address arp_sender{};
  Ipv4Address arp_target{};
  // IPv4
  Ipv4Address source{};
  Ipv4Address destination{};
  uint8_t protocol = 0;
  bool checksums_ok = false;  // IP header and the transport's checksum
  // UDP and TCP
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  TcpSegment tcp;
  // ICMP
  uint8_t icmp_type = 0;
  uint16_t icmp_id = 0;
  uint16_t icmp_sequence = 0;
  Bytes payload;  // UDP, TCP or ICMP echo data
};

// Nothing for a frame too short or malformed to read.
std::optional<ParsedFrame> parse_frame(std::span<const uint8_t> frame);

struct DhcpReply {
  uint8_t message_type = 0;
  uint32_t transaction = 0;
  Ipv4Address your_address{};
  std::optional<Ipv4Address> subnet_mask, router, dns, server;
};
std::optional<DhcpReply> parse_dhcp(std::span<const uint8_t> udp_payload);

Bytes to_bytes(const std::string& text);

}  // namespace hostvisor::net::testing
