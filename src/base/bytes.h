// Typed access to byte buffers at any offset (file headers, boot structures):
// memcpy, so unaligned offsets are fine and no aliasing rule is broken. The
// host is little-endian x86-64, like every format read this way.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace hostvisor {

// The T at `offset`. The caller has checked that [offset, offset + sizeof(T)) fits.
template <typename T>
T load_at(std::span<const uint8_t> bytes, uint64_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

// Writes `value` at `offset`. The caller has checked that it fits.
template <typename T>
void store_at(std::span<uint8_t> bytes, uint64_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

}  // namespace hostvisor
