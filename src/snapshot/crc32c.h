// CRC-32C (Castagnoli), the checksum of snapshot headers, state records and
// memory chunks: it catches every single-bit and burst error up to 32 bits,
// which is what a flipped or truncated byte in a file looks like.
#pragma once

#include <cstdint>
#include <span>

namespace hostvisor::snapshot {

// Continues a CRC over `data`; start with crc = 0. Uses the CPU's crc32
// instruction (SSE4.2) where there is one: a memory file's checksums are
// computed as it is written and verified at several GB/s.
uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

// Continues a CRC over `length` zero bytes without reading them, in
// O(log length): a memory file's holes are zero, and are never read.
uint32_t crc32c_zeros(uint32_t crc, uint64_t length);

}  // namespace hostvisor::snapshot
