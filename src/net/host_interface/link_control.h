// Host network interfaces by name, through the ioctls every Linux kernel
// has had for bridges and addresses (SIOCBRADDBR, SIOCBRADDIF, SIOCSIFADDR,
// ...): what bridged and host-only networks do to the host. All of it needs
// CAP_NET_ADMIN (net_admin.h); errors name the interface and what failed.
#pragma once

#include <string>

#include "base/result.h"
#include "net/ipv4_address.h"

namespace hostvisor::net {

// The interface's index; kNotFound when there is none by that name.
Result<unsigned> interface_index(const std::string& name);
// Sets IFF_UP.
Result<void> set_link_up(const std::string& name);
// Makes `port` a port of `bridge`; kUnsupported when `bridge` is not a bridge.
Result<void> attach_to_bridge(const std::string& bridge, const std::string& port);
// A new bridge (kBusy if the name is taken), and its removal.
Result<void> create_bridge(const std::string& name);
Result<void> delete_bridge(const std::string& name);
// Gives `name` the address `address` in `network` (its netmask and
// broadcast address too): the host's address on a host-only network.
Result<void> set_ipv4_address(const std::string& name, Ipv4Address address, const Ipv4Network& network);

}  // namespace hostvisor::net
