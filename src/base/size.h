// Human sizes on the command line: "256M", "1G", "20G", "4096", "1.5G".
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace hostvisor {

// Parses a byte count with an optional binary suffix (K, M, G, T; an optional
// trailing "B" or "iB" is accepted). Fractions are allowed with a suffix;
// the result must be a whole number of bytes.
Result<uint64_t> parse_size(const std::string& text);

// 1073741824 -> "1 GiB", 1536 -> "1.5 KiB".
std::string format_size(uint64_t bytes);

}  // namespace hostvisor
