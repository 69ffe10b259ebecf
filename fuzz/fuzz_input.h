// Reading fixed-size fields off the front of a fuzz input; short inputs give
// zero-padded values, so every input length is usable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hostvisor::fuzz {

template <typename T>
T take(const uint8_t*& data, size_t& size) {
  T v{};
  const size_t n = size < sizeof(T) ? size : sizeof(T);
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

}  // namespace hostvisor::fuzz
