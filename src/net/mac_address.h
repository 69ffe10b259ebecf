// Ethernet MAC addresses for virtual NICs: parsed from an option or generated.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace hostvisor::net {

using MacAddress = std::array<uint8_t, 6>;

// "52:54:00:12:34:56" (or with '-'); refuses multicast addresses, which a
// NIC's own address cannot be.
Result<MacAddress> parse_mac_address(const std::string& text);
std::string format_mac_address(const MacAddress& mac);
// A random unicast, locally administered address (bit 1 of the first byte set,
// bit 0 clear), so it never collides with a vendor-assigned one.
MacAddress random_local_mac_address();
// A unicast, locally administered address that is a function of `seed` (a
// VM's identity and the NIC's index, say), so a NIC keeps its MAC across
// restarts of the same VM and the guest keeps its DHCP lease and its
// interface name. FNV-1a, stable across builds and hosts.
MacAddress derived_mac_address(std::string_view seed);

}  // namespace hostvisor::net
