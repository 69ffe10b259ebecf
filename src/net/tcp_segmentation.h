// TCP segmentation offload done in software: a guest that negotiated
// HOST_TSO4/6 hands the NIC one super-packet (up to 64 KiB of TCP payload
// behind one set of headers) and the NIC cuts it into MSS-sized frames, as
// a real NIC or the Linux tap does. For backends whose peer only takes
// plain frames (libslirp). Every output frame has complete IP and TCP
// checksums, whatever partial value the guest left.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "net/net_backend.h"

namespace hostvisor::net {

// An MSS below this is refused: it would let one packet fan out into
// thousands of frames (Linux's own floor is 88).
inline constexpr uint16_t kMinimumGsoSize = 88;

// Cuts `frame` (Ethernet + IPv4 or IPv6 + TCP + payload, as described by
// header.gso_type and header.gso_size) into segments and hands each to
// `emit`; `scratch` holds the segment being built. Returns false, having
// emitted nothing, for a packet that is not a well-formed TCP super-packet
// of its GSO type (no IPv6 extension headers, no IPv4 fragments).
bool segment_tcp(std::span<const uint8_t> frame, const VirtioNetHeader& header, std::vector<uint8_t>& scratch,
                 const std::function<void(std::span<const uint8_t>)>& emit);

}  // namespace hostvisor::net
