#include "devices/legacy/post_code.h"

#include <cstring>

namespace hostvisor {

void PostCode::read(uint64_t offset, std::span<uint8_t> data) { std::memset(data.data(), 0, data.size()); }

void PostCode::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 0 && !data.empty()) last_code_.store(data[0], std::memory_order_relaxed);
}

}  // namespace hostvisor
