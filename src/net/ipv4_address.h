// IPv4 addresses and networks as the --net options write them
// ("10.0.2.15", "10.0.2.0/24"), kept in host byte order.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace hostvisor::net {

struct Ipv4Address {
  uint32_t value = 0;  // host byte order: 10.0.2.15 is 0x0a00020f
  friend bool operator==(const Ipv4Address&, const Ipv4Address&) = default;
};

struct Ipv4Network {
  Ipv4Address base;
  uint8_t prefix_length = 0;

  uint32_t mask() const { return prefix_length == 0 ? 0 : ~uint32_t{0} << (32 - prefix_length); }
  bool contains(Ipv4Address address) const { return (address.value & mask()) == base.value; }
  // The address `host` places into the network: host(2) of 10.0.2.0/24 is 10.0.2.2.
  Ipv4Address host(uint32_t index) const { return {base.value | index}; }
  friend bool operator==(const Ipv4Network&, const Ipv4Network&) = default;
};

// Dotted quad, four decimal parts 0-255.
Result<Ipv4Address> parse_ipv4_address(const std::string& text);
std::string format_ipv4_address(Ipv4Address address);
// "A.B.C.D/N"; the address must have no bits set past the prefix.
Result<Ipv4Network> parse_ipv4_network(const std::string& text);
std::string format_ipv4_network(const Ipv4Network& network);

}  // namespace hostvisor::net
