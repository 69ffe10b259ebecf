// The subnet a host-only network gets when net= does not name one: a
// private /24 that collides with no route the host has (so the host's own
// networks stay reachable), and none that `taken` lists.
#pragma once

#include <optional>
#include <vector>

#include "net/ipv4_address.h"

namespace hostvisor::net {

// The first free one of 192.168.56.0/24 to 192.168.255.0/24 (where
// VirtualBox's host-only networks start), then 172.16.0.0/24 to
// 172.31.255.0/24, then 10.0.0.0/24 up; a route of prefix 0 (the default
// route) collides with nothing. None when every candidate is taken.
std::optional<Ipv4Network> choose_free_subnet(const std::vector<Ipv4Network>& routes);

}  // namespace hostvisor::net
