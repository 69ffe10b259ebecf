#include "net/testing/frames.h"

#include <cstring>

#include "net/internet_checksum.h"

namespace hostvisor::net::testing {

namespace {
constexpr size_t kEthernet = 14, kIpv4 = 20, kUdp = 8, kTcp = 20;

void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void put32(Bytes& b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}
uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(get16(b, at)) << 16 | get16(b, at + 2);
}

Bytes ethernet(const MacAddress& destination, const MacAddress& source, uint16_t type, size_t payload) {
  Bytes b(kEthernet + payload);
  std::memcpy(b.data(), destination.data(), 6);
  std::memcpy(b.data() + 6, source.data(), 6);
  put16(b, 12, type);
  return b;
}

// The TCP/UDP pseudo-header's sum.
uint32_t pseudo_header_sum(Ipv4Address source, Ipv4Address destination, uint8_t protocol, size_t length) {
  Bytes p(12);
  put32(p, 0, source.value);
  put32(p, 4, destination.value);
  p[9] = protocol;
  put16(p, 10, static_cast<uint16_t>(length));
  return checksum_add(p);
}
}  // namespace

Bytes to_bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

Bytes arp_frame(uint16_t operation, const MacAddress& sender_mac, Ipv4Address sender, const MacAddress& target_mac,
                Ipv4Address target, const MacAddress& destination_mac) {
  Bytes b = ethernet(destination_mac, sender_mac, kEtherTypeArp, 28);
  put16(b, 14, 1);       // Ethernet
  put16(b, 16, 0x0800);  // IPv4
  b[18] = 6;
  b[19] = 4;
  put16(b, 20, operation);
  std::memcpy(b.data() + 22, sender_mac.data(), 6);
  put32(b, 28, sender.value);
  std::memcpy(b.data() + 32, target_mac.data(), 6);
  put32(b, 38, target.value);
  return b;
}

Bytes ipv4_frame(const Endpoints& e, uint8_t protocol, std::span<const uint8_t> payload, uint16_t id) {
  Bytes b = ethernet(e.destination_mac, e.source_mac, kEtherTypeIpv4, kIpv4 + payload.size());
  b[14] = 0x45;
  put16(b, 16, static_cast<uint16_t>(kIpv4 + payload.size()));
  put16(b, 18, id);
  b[22] = 64;  // TTL
  b[23] = protocol;
  put32(b, 26, e.source.value);
  put32(b, 30, e.destination.value);
  put16(b, 24, checksum_finish(checksum_add(std::span(b).subspan(14, kIpv4))));
  std::memcpy(b.data() + kEthernet + kIpv4, payload.data(), payload.size());
  return b;
}

Bytes udp_frame(const Endpoints& e, uint16_t source_port, uint16_t destination_port, std::span<const uint8_t> payload) {
  Bytes udp(kUdp + payload.size());
  put16(udp, 0, source_port);
  put16(udp, 2, destination_port);
  put16(udp, 4, static_cast<uint16_t>(udp.size()));
  std::memcpy(udp.data() + kUdp, payload.data(), payload.size());
  uint16_t sum =
      checksum_finish(checksum_add(udp, pseudo_header_sum(e.source, e.destination, kProtocolUdp, udp.size())));
  put16(udp, 6, sum ? sum : 0xffff);
  return ipv4_frame(e, kProtocolUdp, udp);
}

VirtioNetHeader tso4_header(uint16_t mss) {
  VirtioNetHeader header{};
  header.flags = kHeaderNeedsCsum;
  header.gso_type = kGsoTcpV4;
  header.gso_size = mss;
  header.hdr_len = 14 + 20 + 20;
  header.csum_start = 14 + 20;
  header.csum_offset = 16;  // TCP's checksum field
  return header;
}

Bytes tcp_frame(const Endpoints& e, const TcpSegment& s) {
  const size_t options = (s.mss ? 4 : 0) + (s.window_scale ? 4 : 0);
  Bytes tcp(kTcp + options + s.payload.size());
  put16(tcp, 0, s.source_port);
  put16(tcp, 2, s.destination_port);
  put32(tcp, 4, s.seq);
  put32(tcp, 8, s.ack);
  tcp[12] = static_cast<uint8_t>((kTcp + options) / 4 << 4);
  tcp[13] = s.flags;
  put16(tcp, 14, s.window);
  size_t option = kTcp;
  if (s.mss) {
    tcp[option] = 2;
    tcp[option + 1] = 4;
    put16(tcp, option + 2, *s.mss);
    option += 4;
  }
  if (s.window_scale) {
    tcp[option] = 1;  // NOP, to keep the header a multiple of 4 bytes
    tcp[option + 1] = 3;
    tcp[option + 2] = 3;
    tcp[option + 3] = *s.window_scale;
  }
  std::memcpy(tcp.data() + kTcp + options, s.payload.data(), s.payload.size());
  put16(tcp, 16,
        checksum_finish(checksum_add(tcp, pseudo_header_sum(e.source, e.destination, kProtocolTcp, tcp.size()))));
  return ipv4_frame(e, kProtocolTcp, tcp);
}

Bytes icmp_echo_frame(const Endpoints& e, uint16_t id, uint16_t sequence, std::span<const uint8_t> payload) {
  Bytes icmp(8 + payload.size());
  icmp[0] = 8;  // echo request
  put16(icmp, 4, id);
  put16(icmp, 6, sequence);
  std::memcpy(icmp.data() + 8, payload.data(), payload.size());
  put16(icmp, 2, checksum_finish(checksum_add(icmp)));
  return ipv4_frame(e, kProtocolIcmp, icmp);
}

Bytes dhcp_frame(const MacAddress& mac, uint8_t message_type, uint32_t transaction,
                 std::optional<Ipv4Address> requested, std::optional<Ipv4Address> server) {
  Bytes d(240);
  d[0] = 1;  // BOOTREQUEST
  d[1] = 1;  // Ethernet
  d[2] = 6;
  put32(d, 4, transaction);
  put16(d, 10, 0x8000);  // broadcast replies: the client has no address yet
  std::memcpy(d.data() + 28, mac.data(), 6);
  put32(d, 236, 0x63825363);  // magic cookie
  d.insert(d.end(), {53, 1, message_type});
  if (requested) {
    d.insert(d.end(), {50, 4});
    d.resize(d.size() + 4);
    put32(d, d.size() - 4, requested->value);
  }
  if (server) {
    d.insert(d.end(), {54, 4});
    d.resize(d.size() + 4);
    put32(d, d.size() - 4, server->value);
  }
  d.insert(d.end(), {55, 3, 1, 3, 6, 255});  // ask for mask, router, DNS; end
  return udp_frame({mac, kBroadcastMac, {0}, {0xffffffff}}, 68, 67, d);
}

std::optional<ParsedFrame> parse_frame(std::span<const uint8_t> f) {
  if (f.size() < kEthernet) return std::nullopt;
  ParsedFrame p;
  std::memcpy(p.destination_mac.data(), f.data(), 6);
  std::memcpy(p.source_mac.data(), f.data() + 6, 6);
  p.ether_type = get16(f, 12);
  if (p.ether_type == kEtherTypeArp) {
    if (f.size() < kEthernet + 28) return std::nullopt;
    p.arp_operation = get16(f, 20);
    std::memcpy(p.arp_sender_mac.data(), f.data() + 22, 6);
    p.arp_sender = {get32(f, 28)};
    p.arp_target = {get32(f, 38)};
    return p;
  }
  if (p.ether_type != kEtherTypeIpv4) return p;
  if (f.size() < kEthernet + kIpv4) return std::nullopt;
  const size_t header = (f[14] & 0xf) * 4u;
  const size_t total = get16(f, 16);
  if (header < kIpv4 || total < header || kEthernet + total > f.size()) return std::nullopt;
  p.protocol = f[23];
  p.source = {get32(f, 26)};
  p.destination = {get32(f, 30)};
  const bool ip_ok = checksum_finish(checksum_add(f.subspan(14, header))) == 0;
  const auto l4 = f.subspan(kEthernet + header, total - header);
  if (p.protocol == kProtocolUdp && l4.size() >= kUdp) {
    p.source_port = get16(l4, 0);
    p.destination_port = get16(l4, 2);
    const bool sum_ok =
        get16(l4, 6) == 0 ||
        checksum_finish(checksum_add(l4, pseudo_header_sum(p.source, p.destination, kProtocolUdp, l4.size()))) == 0;
    p.checksums_ok = ip_ok && sum_ok;
    p.payload.assign(l4.begin() + kUdp, l4.end());
  } else if (p.protocol == kProtocolTcp && l4.size() >= kTcp) {
    const size_t offset = (l4[12] >> 4) * 4u;
    if (offset < kTcp || offset > l4.size()) return std::nullopt;
    p.source_port = p.tcp.source_port = get16(l4, 0);
    p.destination_port = p.tcp.destination_port = get16(l4, 2);
    p.tcp.seq = get32(l4, 4);
    p.tcp.ack = get32(l4, 8);
    p.tcp.flags = l4[13];
    p.tcp.window = get16(l4, 14);
    p.checksums_ok = ip_ok && checksum_finish(checksum_add(
                                  l4, pseudo_header_sum(p.source, p.destination, kProtocolTcp, l4.size()))) == 0;
    p.payload.assign(l4.begin() + static_cast<ptrdiff_t>(offset), l4.end());
    p.tcp.payload = p.payload;
  } else if (p.protocol == kProtocolIcmp && l4.size() >= 8) {
    p.icmp_type = l4[0];
    p.icmp_id = get16(l4, 4);
    p.icmp_sequence = get16(l4, 6);
    p.checksums_ok = ip_ok && checksum_finish(checksum_add(l4)) == 0;
    p.payload.assign(l4.begin() + 8, l4.end());
  }
  return p;
}

std::optional<DhcpReply> parse_dhcp(std::span<const uint8_t> d) {
  if (d.size() < 240 || d[0] != 2 || get32(d, 236) != 0x63825363) return std::nullopt;
  DhcpReply r;
  r.transaction = get32(d, 4);
  r.your_address = {get32(d, 16)};
  for (size_t at = 240; at < d.size() && d[at] != 255;) {
    if (d[at] == 0) {
      ++at;
      continue;
    }
    if (at + 2 > d.size() || at + 2 + d[at + 1] > d.size()) break;
    const uint8_t code = d[at], length = d[at + 1];
    const auto value = d.subspan(at + 2, length);
    if (code == 53 && length == 1) r.message_type = value[0];
    if (length >= 4) {
      const Ipv4Address address{get32(value, 0)};
      if (code == 1) r.subnet_mask = address;
      if (code == 3) r.router = address;
      if (code == 6) r.dns = address;
      if (code == 54) r.server = address;
    }
    at += 2 + length;
  }
  return r;
}

}  // namespace hostvisor::net::testing
