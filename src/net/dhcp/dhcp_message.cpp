#include "net/dhcp/dhcp_message.h"

#include <cstring>

#include "net/internet_checksum.h"

namespace hostvisor::net::dhcp {

namespace {
constexpr size_t kEthernet = 14;
constexpr size_t kBootpFixed = 236;  // op .. file, before the magic cookie
constexpr uint8_t kCookie[4] = {99, 130, 83, 99};
constexpr size_t kMinimumBootp = 300;  // BOOTP's minimum message, which old clients expect

uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(get16(b, at)) << 16 | get16(b, at + 2);
}
void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  put16(b, at, static_cast<uint16_t>(v >> 16));
  put16(b, at + 2, static_cast<uint16_t>(v));
}
void append_option(std::vector<uint8_t>& b, uint8_t code, std::span<const uint8_t> value) {
  b.push_back(code);
  b.push_back(static_cast<uint8_t>(value.size()));
  b.insert(b.end(), value.begin(), value.end());
}
void append_address(std::vector<uint8_t>& b, uint8_t code, Ipv4Address a) {
  const uint8_t v[4] = {static_cast<uint8_t>(a.value >> 24), static_cast<uint8_t>(a.value >> 16),
                        static_cast<uint8_t>(a.value >> 8), static_cast<uint8_t>(a.value)};
  append_option(b, code, v);
}
void append_u32(std::vector<uint8_t>& b, uint8_t code, uint32_t value) { append_address(b, code, {value}); }
}  // namespace

std::optional<ClientMessage> parse_client_frame(std::span<const uint8_t> frame) {
  if (frame.size() < kEthernet + 20 || get16(frame, 12) != 0x0800) return std::nullopt;
  const auto ip = frame.subspan(kEthernet);
  const size_t ip_header = (ip[0] & 0xf) * 4u;
  if ((ip[0] >> 4) != 4 || ip_header < 20 || ip[9] != 17) return std::nullopt;
  const size_t total = get16(ip, 2);
  if (total < ip_header + 8 || total > ip.size()) return std::nullopt;
  if ((get16(ip, 6) & 0x3fff) != 0) return std::nullopt;  // a fragment
  const auto udp = ip.subspan(ip_header, total - ip_header);
  if (get16(udp, 2) != kServerPort) return std::nullopt;
  const size_t udp_length = get16(udp, 4);
  if (udp_length < 8 || udp_length > udp.size()) return std::nullopt;
  const auto bootp = udp.subspan(8, udp_length - 8);
  if (bootp.size() < kBootpFixed + sizeof kCookie) return std::nullopt;
  if (bootp[0] != 1 || bootp[1] != 1 || bootp[2] != 6) return std::nullopt;  // BOOTREQUEST, Ethernet
  if (std::memcmp(bootp.data() + kBootpFixed, kCookie, sizeof kCookie) != 0) return std::nullopt;

  ClientMessage m;
  m.transaction = get32(bootp, 4);
  m.flags = get16(bootp, 10);
  m.client_address = {get32(bootp, 12)};
  m.relay_address = {get32(bootp, 24)};
  std::memcpy(m.client_mac.data(), bootp.data() + 28, 6);

  std::optional<uint8_t> type;
  const auto options = bootp.subspan(kBootpFixed + sizeof kCookie);
  for (size_t at = 0; at < options.size();) {
    const uint8_t code = options[at];
    if (code == 0) {
      ++at;
      continue;
    }
    if (code == 255) break;
    if (at + 1 >= options.size()) return std::nullopt;
    const size_t length = options[at + 1];
    if (at + 2 + length > options.size()) return std::nullopt;
    const auto value = options.subspan(at + 2, length);
    if (code == 53 && length == 1) type = value[0];
    if (code == 50 && length == 4) m.requested = Ipv4Address{get32(value, 0)};
    if (code == 54 && length == 4) m.server = Ipv4Address{get32(value, 0)};
    at += 2 + length;
  }
  if (!type || *type < 1 || *type > 8 || *type == 2 || *type == 5 || *type == 6) return std::nullopt;
  m.type = static_cast<MessageType>(*type);
  return m;
}

std::vector<uint8_t> build_reply_frame(const ServerReply& reply) {
  const ClientMessage& request = *reply.request;
  std::vector<uint8_t> bootp(kBootpFixed, 0);
  bootp[0] = 2;  // BOOTREPLY
  bootp[1] = 1;
  bootp[2] = 6;
  put32(bootp, 4, request.transaction);
  put16(bootp, 10, request.flags);
  if (reply.type != MessageType::kNak) {
    // An INFORM's ACK echoes ciaddr; a lease goes in yiaddr.
    put32(bootp, 12, request.type == MessageType::kInform ? request.client_address.value : 0);
    put32(bootp, 16, reply.your_address.value);
  }
  put32(bootp, 24, request.relay_address.value);
  std::memcpy(bootp.data() + 28, request.client_mac.data(), 6);
  bootp.insert(bootp.end(), std::begin(kCookie), std::end(kCookie));
  const uint8_t type = static_cast<uint8_t>(reply.type);
  append_option(bootp, 53, std::span<const uint8_t>(&type, 1));
  append_address(bootp, 54, reply.server);
  if (reply.lease_seconds) {
    append_u32(bootp, 51, *reply.lease_seconds);
    append_u32(bootp, 58, *reply.lease_seconds / 2);
    append_u32(bootp, 59, static_cast<uint32_t>(uint64_t{*reply.lease_seconds} * 7 / 8));
  }
  if (reply.subnet_mask) append_address(bootp, 1, *reply.subnet_mask);
  if (reply.broadcast) append_address(bootp, 28, *reply.broadcast);
  if (reply.router) append_address(bootp, 3, *reply.router);
  if (!reply.dns.empty()) {
    std::vector<uint8_t> servers;
    for (size_t i = 0; i < reply.dns.size() && i < 8; ++i)
      for (int shift = 24; shift >= 0; shift -= 8) servers.push_back(static_cast<uint8_t>(reply.dns[i].value >> shift));
    append_option(bootp, 6, servers);
  }
  bootp.push_back(255);
  if (bootp.size() < kMinimumBootp) bootp.resize(kMinimumBootp, 0);

  const size_t udp_length = 8 + bootp.size();
  const size_t ip_length = 20 + udp_length;
  std::vector<uint8_t> frame(kEthernet + ip_length, 0);
  std::memcpy(frame.data(), reply.destination_mac.data(), 6);
  std::memcpy(frame.data() + 6, reply.server_mac.data(), 6);
  put16(frame, 12, 0x0800);
  const size_t ip = kEthernet, udp = ip + 20;
  frame[ip] = 0x45;
  put16(frame, ip + 2, static_cast<uint16_t>(ip_length));
  frame[ip + 8] = 64;  // TTL
  frame[ip + 9] = 17;
  put32(frame, ip + 12, reply.server.value);
  put32(frame, ip + 16, reply.destination.value);
  put16(frame, ip + 10, checksum_finish(checksum_add(std::span<const uint8_t>(frame).subspan(ip, 20))));
  put16(frame, udp, kServerPort);
  put16(frame, udp + 2, kClientPort);
  put16(frame, udp + 4, static_cast<uint16_t>(udp_length));
  std::memcpy(frame.data() + udp + 8, bootp.data(), bootp.size());
  uint32_t sum = checksum_add(std::span<const uint8_t>(frame).subspan(ip + 12, 8));
  sum += 17 + static_cast<uint32_t>(udp_length);
  const uint16_t udp_sum = checksum_finish(checksum_add(std::span<const uint8_t>(frame).subspan(udp), sum));
  put16(frame, udp + 6, udp_sum == 0 ? 0xffff : udp_sum);
  return frame;
}

}  // namespace hostvisor::net::dhcp
