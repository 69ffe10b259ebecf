// The CFI flash bank (src/devices/flash/) under a hostile guest: command
// sequences, data and accesses of any size at any offset, in and past the
// bank, on a writable and a read-only bank. Input format, repeated:
//   op byte: bit 0 read/write, bit 1 which bank, bits 2-4 size (0-7, +1)
//   2 bytes of offset (may lie past the bank's 8 KiB)
//   a write: that many data bytes
#include "devices/flash/cfi_flash.h"

#include <cstddef>
#include <cstdint>

using namespace hostvisor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kBlock = 4096;
  auto writable = CfiFlash::create(std::vector<uint8_t>(2 * kBlock, 0xa5), kBlock, {}, false);
  auto read_only = CfiFlash::create(std::vector<uint8_t>(2 * kBlock, 0x5a), kBlock, {}, true);
  if (!writable || !read_only) __builtin_trap();
  size_t i = 0;
  auto next = [&]() -> uint8_t { return i < size ? data[i++] : 0; };
  while (i < size) {
    const uint8_t op = next();
    CfiFlash& bank = (op & 2) ? **read_only : **writable;
    const size_t n = ((op >> 2) & 7) + 1;
    const uint64_t offset = uint64_t{next()} << 8 | next();
    uint8_t bytes[8];
    if (op & 1) {
      for (size_t k = 0; k < n; ++k) bytes[k] = next();
      bank.write(offset, std::span<const uint8_t>(bytes, n));
    } else {
      bank.read(offset, std::span(bytes, n));
    }
  }
  if ((*writable)->contents().size() != 2 * kBlock) __builtin_trap();
  if ((*read_only)->contents() != std::vector<uint8_t>(2 * kBlock, 0x5a)) __builtin_trap();
  if (!(*writable)->restore((*writable)->save())) __builtin_trap();
  return 0;
}
