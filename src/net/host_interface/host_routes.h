// The IPv4 routes the host has (its main routing table, as
// /proc/net/route shows it): what a new host-only network's subnet must not
// collide with.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "net/ipv4_address.h"

namespace hostvisor::net {

// The destinations in the text of /proc/net/route (a header line, then one
// route per line: interface, destination, gateway, flags, refcount, use,
// metric, mask, ...; addresses in hex as the kernel prints a big-endian
// word). Lines that do not parse are skipped; a mask that is not a prefix
// is skipped too.
std::vector<Ipv4Network> parse_proc_net_route(const std::string& text);

// The routes of this process's network namespace.
Result<std::vector<Ipv4Network>> read_host_routes();

// True when the two networks share an address.
bool networks_overlap(const Ipv4Network& a, const Ipv4Network& b);

}  // namespace hostvisor::net
