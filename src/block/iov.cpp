#include "block/iov.h"

#include <algorithm>
#include <cstring>

namespace hostvisor::block {

size_t iov_bytes(std::span<const iovec> iov) {
  size_t n = 0;
  for (const auto& v : iov) n += v.iov_len;
  return n;
}

std::vector<iovec> iov_slice(std::span<const iovec> iov, size_t offset, size_t len) {
  std::vector<iovec> out;
  for (const auto& v : iov) {
    if (len == 0) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    size_t take = std::min(v.iov_len - offset, len);
    out.push_back({static_cast<uint8_t*>(v.iov_base) + offset, take});
    len -= take;
    offset = 0;
  }
  return out;
}

void iov_fill_zero(std::span<const iovec> iov) {
  for (const auto& v : iov) std::memset(v.iov_base, 0, v.iov_len);
}

void iov_copy_in(std::span<const iovec> iov, const uint8_t* src) {
  for (const auto& v : iov) {
    std::memcpy(v.iov_base, src, v.iov_len);
    src += v.iov_len;
  }
}

void iov_copy_out(std::span<const iovec> iov, uint8_t* dst) {
  for (const auto& v : iov) {
    std::memcpy(dst, v.iov_base, v.iov_len);
    dst += v.iov_len;
  }
}

}  // namespace hostvisor::block
