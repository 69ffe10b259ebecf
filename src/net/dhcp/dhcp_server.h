// A DHCP server for one segment (RFC 2131): leases from a CIDR, stable per
// client MAC (the first address tried is a hash of the MAC, so a VM gets
// the same address again even from a new server), DISCOVER/OFFER,
// REQUEST/ACK or NAK, RELEASE, DECLINE and INFORM. It also answers ARP for
// its own address, so clients can renew by unicast.
//
// It sees only Ethernet frames (handle_frame() in, a reply frame out), so it
// runs wherever frames are: as a port of the switch process for internal
// networks, or on a host-only segment. Every input is untrusted; the lease
// table is bounded.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/result.h"
#include "net/dhcp/dhcp_message.h"
#include "net/ipv4_address.h"
#include "net/mac_address.h"

namespace hostvisor::net::dhcp {

using Clock = std::chrono::steady_clock;

struct DhcpServerConfig {
  Ipv4Network network;
  // The server's own address and MAC; the address defaults to host 1 of
  // the network (and is never leased).
  std::optional<Ipv4Address> server;
  MacAddress server_mac{0x02, 0x68, 0x76, 0x64, 0x68, 0x63};
  // Left out on internal networks: they have no gateway and no resolver.
  std::optional<Ipv4Address> router;
  std::vector<Ipv4Address> dns;
  // Addresses never leased besides the server's own (a host-only network's
  // host address).
  std::vector<Ipv4Address> reserved;
  uint32_t lease_seconds = 3600;
  size_t max_leases = 1024;
};

class DhcpServer {
 public:
  // Refuses a network with no room for a client (longer than /30).
  static Result<DhcpServer> create(const DhcpServerConfig& config);

  // Handles one frame seen on the segment; returns the frame to send back.
  std::optional<std::vector<uint8_t>> handle_frame(std::span<const uint8_t> frame, Clock::time_point now);

  // The address `mac` has or will be offered, held for it from now for a
  // lease's time as if it had asked (a host-only network forwards host
  // ports to a VM's address before the VM has booted). Nothing when the
  // pool is full.
  std::optional<Ipv4Address> address_for(const MacAddress& mac, Clock::time_point now);

  const MacAddress& server_mac() const { return config_.server_mac; }
  size_t lease_count() const { return leases_.size(); }

 private:
  struct Lease {
    Ipv4Address address;
    Clock::time_point expires;
  };

  explicit DhcpServer(const DhcpServerConfig& config, Ipv4Address server);
  static uint64_t key(const MacAddress& mac);

  std::optional<std::vector<uint8_t>> handle_dhcp(const ClientMessage& message, Clock::time_point now);
  std::optional<std::vector<uint8_t>> answer_arp(std::span<const uint8_t> frame) const;
  // The address for `mac`: its lease, else `wanted` if free, else the first
  // free one from its hash. Nothing when the pool (or the table) is full.
  std::optional<Ipv4Address> choose_address(const MacAddress& mac, std::optional<Ipv4Address> wanted,
                                            Clock::time_point now);
  bool in_pool(Ipv4Address address) const;
  bool free_for(Ipv4Address address, uint64_t mac, Clock::time_point now) const;
  void bind(uint64_t mac, Ipv4Address address, Clock::time_point expires);
  void unbind(uint64_t mac);
  void reclaim_expired(Clock::time_point now);
  std::vector<uint8_t> reply(MessageType type, const ClientMessage& request, Ipv4Address yours) const;

  DhcpServerConfig config_;
  Ipv4Address server_;
  uint32_t first_ = 0, count_ = 0;                  // the pool: host indexes first_ .. first_ + count_ - 1
  std::unordered_map<uint64_t, Lease> leases_;      // by client MAC
  std::unordered_map<uint32_t, uint64_t> holders_;  // address -> client MAC
  std::unordered_set<uint32_t> declined_;           // addresses a client found in use
};

}  // namespace hostvisor::net::dhcp
