// What the host gateway of a rootless host-only network lets through to its
// NAT (libslirp, which maps the gateway's own address to the host's
// loopback and would connect anywhere else through the host's sockets).
// The gate is on addresses, before slirp parses anything: an IPv4 packet
// whose destination is the gateway's address, and an ARP packet about that
// address (a VM asking for the gateway's MAC, or answering the gateway's
// question about its own). Nothing else reaches slirp, so a VM can reach
// the host's own services and nothing beyond the host, whatever routes the
// guest sets up; DHCP on the segment is the switch's own server. Frames
// from a VM are hostile: every length is checked.
#pragma once

#include <cstdint>
#include <span>

#include "net/ipv4_address.h"

namespace hostvisor::net {

// True when the Ethernet frame may go to the gateway's NAT.
bool gateway_takes_frame(std::span<const uint8_t> frame, Ipv4Address gateway);

}  // namespace hostvisor::net
