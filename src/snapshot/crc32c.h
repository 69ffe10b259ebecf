// CRC-32C (Castagnoli), the checksum of snapshot headers and state records:
// it catches every single-bit and burst error up to 32 bits, which is what a
// flipped or truncated byte in a file looks like.
#pragma once

#include <cstdint>
#include <span>

namespace hostvisor::snapshot {

// Continues a CRC over `data`; start with crc = 0.
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

}  // namespace hostvisor::snapshot
