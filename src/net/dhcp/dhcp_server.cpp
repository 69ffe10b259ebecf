#include "net/dhcp/dhcp_server.h"

#include <algorithm>
#include <cstring>

namespace hostvisor::net::dhcp {

namespace {
constexpr auto kOfferHold = std::chrono::seconds(60);  // an offered address waits this long for its REQUEST
constexpr MacAddress kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr Ipv4Address kBroadcast{0xffffffff};

uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(get16(b, at)) << 16 | get16(b, at + 2);
}
}  // namespace

Result<DhcpServer> DhcpServer::create(const DhcpServerConfig& config) {
  if (config.network.prefix_length > 30 || config.network.prefix_length < 8)
    return Error(ErrorCode::kInvalidArgument,
                 "a DHCP network must be /8 to /30 (room for the server and a client), not " +
                     format_ipv4_network(config.network));
  const Ipv4Address server = config.server.value_or(config.network.host(1));
  const Ipv4Address broadcast{config.network.base.value | ~config.network.mask()};
  if (!config.network.contains(server) || server == config.network.base || server == broadcast)
    return Error(ErrorCode::kInvalidArgument,
                 "the DHCP server's address is not a host of " + format_ipv4_network(config.network));
  if (config.max_leases == 0) return Error(ErrorCode::kInvalidArgument, "a DHCP server needs room for one lease");
  return DhcpServer(config, server);
}

DhcpServer::DhcpServer(const DhcpServerConfig& config, Ipv4Address server) : config_(config), server_(server) {
  // Every host of the network but the network and broadcast addresses; the
  // server's own is skipped when chosen.
  first_ = 1;
  count_ = ~config.network.mask() - 1;
}

uint64_t DhcpServer::key(const MacAddress& mac) {
  uint64_t k = 0;
  for (uint8_t b : mac) k = k << 8 | b;
  return k;
}

bool DhcpServer::in_pool(Ipv4Address address) const {
  if (!config_.network.contains(address) || address == server_) return false;
  if (std::find(config_.reserved.begin(), config_.reserved.end(), address) != config_.reserved.end()) return false;
  const uint32_t host = address.value & ~config_.network.mask();
  return host >= first_ && host < first_ + count_ && !declined_.contains(address.value);
}

bool DhcpServer::free_for(Ipv4Address address, uint64_t mac, Clock::time_point now) const {
  if (!in_pool(address)) return false;
  const auto holder = holders_.find(address.value);
  if (holder == holders_.end() || holder->second == mac) return true;
  const auto lease = leases_.find(holder->second);
  return lease == leases_.end() || lease->second.expires <= now;
}

void DhcpServer::bind(uint64_t mac, Ipv4Address address, Clock::time_point expires) {
  if (auto it = leases_.find(mac); it != leases_.end() && !(it->second.address == address))
    holders_.erase(it->second.address.value);
  // An expired lease of another client on this address goes.
  if (auto holder = holders_.find(address.value); holder != holders_.end() && holder->second != mac)
    leases_.erase(holder->second);
  leases_[mac] = {address, expires};
  holders_[address.value] = mac;
}

std::optional<Ipv4Address> DhcpServer::address_for(const MacAddress& mac, Clock::time_point now) {
  const auto address = choose_address(mac, std::nullopt, now);
  if (!address) return std::nullopt;
  const uint64_t k = key(mac);
  const auto expires = now + std::chrono::seconds(config_.lease_seconds);
  if (auto it = leases_.find(k); it == leases_.end() || it->second.expires < expires) bind(k, *address, expires);
  return address;
}

void DhcpServer::unbind(uint64_t mac) {
  if (auto it = leases_.find(mac); it != leases_.end()) {
    holders_.erase(it->second.address.value);
    leases_.erase(it);
  }
}

void DhcpServer::reclaim_expired(Clock::time_point now) {
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expires <= now) {
      holders_.erase(it->second.address.value);
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<Ipv4Address> DhcpServer::choose_address(const MacAddress& mac, std::optional<Ipv4Address> wanted,
                                                      Clock::time_point now) {
  const uint64_t k = key(mac);
  const auto held = leases_.find(k);
  if (held != leases_.end() && in_pool(held->second.address)) return held->second.address;
  // A client without a lease gets one only while the table has room, the
  // address it asks for included (that check once came after this one, and
  // DISCOVERs naming free addresses grew the table past max_leases).
  const bool has_lease = held != leases_.end();
  if (!has_lease && leases_.size() >= config_.max_leases) reclaim_expired(now);
  if (!has_lease && leases_.size() >= config_.max_leases) return std::nullopt;
  if (wanted && free_for(*wanted, k, now)) return wanted;
  // FNV-1a of the MAC: the same client starts at the same address.
  uint64_t hash = 0xcbf29ce484222325ull;
  for (uint8_t b : mac) hash = (hash ^ b) * 0x100000001b3ull;
  // At most max_leases addresses are held, plus the server's and the
  // declined ones: a free one is found within that many steps.
  const uint64_t tries = std::min<uint64_t>(count_, config_.max_leases + declined_.size() + 2);
  for (uint64_t i = 0; i < tries; ++i) {
    const Ipv4Address candidate = config_.network.host(first_ + static_cast<uint32_t>((hash + i) % count_));
    if (free_for(candidate, k, now)) return candidate;
  }
  return std::nullopt;
}

std::vector<uint8_t> DhcpServer::reply(MessageType type, const ClientMessage& request, Ipv4Address yours) const {
  ServerReply r;
  r.type = type;
  r.request = &request;
  r.your_address = yours;
  r.server = server_;
  r.server_mac = config_.server_mac;
  if (type != MessageType::kNak) {
    if (request.type != MessageType::kInform) r.lease_seconds = config_.lease_seconds;
    r.subnet_mask = Ipv4Address{config_.network.mask()};
    r.broadcast = Ipv4Address{config_.network.base.value | ~config_.network.mask()};
    r.router = config_.router;
    r.dns = config_.dns;
  }
  // RFC 2131 4.1: to ciaddr when the client has one; a NAK, and a reply to
  // a client that asked for it, by broadcast; else to the new address at
  // the client's MAC.
  if (type != MessageType::kNak && request.client_address.value != 0) {
    r.destination_mac = request.client_mac;
    r.destination = request.client_address;
  } else if (type == MessageType::kNak || (request.flags & 0x8000)) {
    r.destination_mac = kBroadcastMac;
    r.destination = kBroadcast;
  } else {
    r.destination_mac = request.client_mac;
    r.destination = yours;
  }
  return build_reply_frame(r);
}

std::optional<std::vector<uint8_t>> DhcpServer::handle_dhcp(const ClientMessage& m, Clock::time_point now) {
  if (m.relay_address.value != 0) return std::nullopt;  // this server serves its own segment only
  const uint64_t k = key(m.client_mac);
  const bool for_us = !m.server || *m.server == server_;
  switch (m.type) {
    case MessageType::kDiscover: {
      const auto address = choose_address(m.client_mac, m.requested, now);
      if (!address) return std::nullopt;  // the pool is full: stay silent, another server may answer
      if (auto it = leases_.find(k); it == leases_.end() || it->second.expires < now + kOfferHold)
        bind(k, *address, now + kOfferHold);
      return reply(MessageType::kOffer, m, *address);
    }
    case MessageType::kRequest: {
      if (!for_us) {  // the client took another server's offer
        if (auto it = leases_.find(k); it != leases_.end() && it->second.expires <= now + kOfferHold) unbind(k);
        return std::nullopt;
      }
      const Ipv4Address wanted = m.requested.value_or(m.client_address);
      if (wanted.value == 0) return std::nullopt;
      if (!free_for(wanted, k, now)) return reply(MessageType::kNak, m, {});
      const auto held = leases_.find(k);
      if (held == leases_.end() && leases_.size() >= config_.max_leases) reclaim_expired(now);
      if (held == leases_.end() && leases_.size() >= config_.max_leases) return reply(MessageType::kNak, m, {});
      bind(k, wanted, now + std::chrono::seconds(config_.lease_seconds));
      return reply(MessageType::kAck, m, wanted);
    }
    case MessageType::kDecline:
      if (!for_us || !m.requested) return std::nullopt;
      if (auto it = leases_.find(k); it != leases_.end() && it->second.address == *m.requested) {
        // Someone else uses it: never offer it again (bounded like the leases).
        if (declined_.size() < config_.max_leases) declined_.insert(m.requested->value);
        unbind(k);
      }
      return std::nullopt;
    case MessageType::kRelease:
      if (!for_us) return std::nullopt;
      if (auto it = leases_.find(k); it != leases_.end() && it->second.address == m.client_address) unbind(k);
      return std::nullopt;
    case MessageType::kInform:
      if (m.client_address.value == 0) return std::nullopt;
      return reply(MessageType::kAck, m, {});
    default: return std::nullopt;
  }
}

std::optional<std::vector<uint8_t>> DhcpServer::answer_arp(std::span<const uint8_t> frame) const {
  // Ethernet/IPv4 ARP request (RFC 826) for the server's address.
  if (frame.size() < 42 || get16(frame, 14) != 1 || get16(frame, 16) != 0x0800 || frame[18] != 6 || frame[19] != 4 ||
      get16(frame, 20) != 1 || get32(frame, 38) != server_.value)
    return std::nullopt;
  std::vector<uint8_t> out(42, 0);
  std::memcpy(out.data(), frame.data() + 22, 6);  // to the sender's hardware address
  std::memcpy(out.data() + 6, config_.server_mac.data(), 6);
  out[12] = 0x08, out[13] = 0x06;
  std::memcpy(out.data() + 14, frame.data() + 14, 6);  // hardware and protocol types and sizes
  out[20] = 0, out[21] = 2;                            // reply
  std::memcpy(out.data() + 22, config_.server_mac.data(), 6);
  std::memcpy(out.data() + 28, frame.data() + 38, 4);   // our address
  std::memcpy(out.data() + 32, frame.data() + 22, 10);  // the sender's MAC and address
  out.resize(60, 0);
  return out;
}

std::optional<std::vector<uint8_t>> DhcpServer::handle_frame(std::span<const uint8_t> frame, Clock::time_point now) {
  if (frame.size() < 14) return std::nullopt;
  const uint16_t ether_type = get16(frame, 12);
  if (ether_type == 0x0806) return answer_arp(frame);
  if (ether_type != 0x0800) return std::nullopt;
  const auto message = parse_client_frame(frame);
  if (!message) return std::nullopt;
  return handle_dhcp(*message, now);
}

}  // namespace hostvisor::net::dhcp
