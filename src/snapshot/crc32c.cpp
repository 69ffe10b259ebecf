#include "snapshot/crc32c.h"

#include <nmmintrin.h>

#include <array>
#include <cstring>

namespace hostvisor::snapshot {

namespace {

constexpr uint32_t kPolynomial = 0x82f63b78;  // reflected Castagnoli

constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t value = i;
    for (int bit = 0; bit < 8; ++bit) value = (value & 1) ? (value >> 1) ^ kPolynomial : value >> 1;
    table[i] = value;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = make_table();

// Both work on the register without the initial and final inversion.
uint32_t update_table(const uint8_t* data, size_t length, uint32_t reg) {
  for (size_t i = 0; i < length; ++i) reg = kTable[(reg ^ data[i]) & 0xff] ^ (reg >> 8);
  return reg;
}

__attribute__((target("sse4.2"))) uint32_t update_sse42(const uint8_t* data, size_t length, uint32_t reg) {
  uint64_t wide = reg;
  for (; length >= 8; data += 8, length -= 8) {
    uint64_t word;
    std::memcpy(&word, data, 8);
    wide = _mm_crc32_u64(wide, word);
  }
  reg = static_cast<uint32_t>(wide);
  for (; length > 0; ++data, --length) reg = _mm_crc32_u8(reg, *data);
  return reg;
}

bool have_sse42() {
  static const bool have = [] {
    __builtin_cpu_init();  // may run before the runtime's own constructor
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return have;
}

// Appending a zero byte maps the register linearly (over GF(2)): reg ->
// table[reg & 0xff] ^ (reg >> 8). kZeroOperators[k] is that map applied 2^k
// times, as 32 columns (the image of each bit).
using Operator = std::array<uint32_t, 32>;

uint32_t apply(const Operator& op, uint32_t reg) {
  uint32_t out = 0;
  for (int bit = 0; reg != 0; ++bit, reg >>= 1)
    if (reg & 1) out ^= op[bit];
  return out;
}

std::array<Operator, 64> make_zero_operators() {
  std::array<Operator, 64> ops{};
  for (int bit = 0; bit < 32; ++bit) {
    const uint32_t reg = 1u << bit;
    ops[0][bit] = kTable[reg & 0xff] ^ (reg >> 8);
  }
  for (size_t k = 1; k < ops.size(); ++k)
    for (int bit = 0; bit < 32; ++bit) ops[k][bit] = apply(ops[k - 1], ops[k - 1][bit]);
  return ops;
}

const std::array<Operator, 64> kZeroOperators = make_zero_operators();

}  // namespace

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc) {
  const uint32_t reg =
      have_sse42() ? update_sse42(data.data(), data.size(), ~crc) : update_table(data.data(), data.size(), ~crc);
  return ~reg;
}

uint32_t crc32c_zeros(uint32_t crc, uint64_t length) {
  uint32_t reg = ~crc;
  for (size_t k = 0; length != 0; ++k, length >>= 1)
    if (length & 1) reg = apply(kZeroOperators[k], reg);
  return ~reg;
}

}  // namespace hostvisor::snapshot
