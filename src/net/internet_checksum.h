// The Internet checksum (RFC 1071): IPv4 headers, ICMP, UDP and TCP, and the
// partial checksums a guest leaves for the NIC to finish (virtio-net
// NEEDS_CSUM).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace hostvisor::net {

// The one's-complement sum of `bytes` (big-endian 16-bit words, an odd last
// byte padded with zero) added to `sum`, not folded.
uint32_t checksum_add(std::span<const uint8_t> bytes, uint32_t sum = 0);
// Folds a running sum to 16 bits and complements it: the checksum field's value.
uint16_t checksum_finish(uint32_t sum);

// Finishes a partial checksum in place as a NIC does for NEEDS_CSUM: sums
// frame[csum_start..] (the guest put the pseudo-header's sum in the field)
// and stores the result at csum_start + csum_offset. False if the offsets
// fall outside the frame.
bool complete_partial_checksum(std::span<uint8_t> frame, size_t csum_start, size_t csum_offset);

}  // namespace hostvisor::net
