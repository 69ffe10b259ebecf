// fw_cfg (src/devices/fw_cfg/) under a hostile guest: selector and data-port
// accesses, raw accesses of any size at any offset, and DMA descriptors the
// fuzzer writes into a small guest RAM and starts, with control bits,
// lengths and buffer addresses of its choosing (outside RAM, wrapping,
// straddling the end). Input format, repeated:
//   op byte (low 3 bits):
//     0 select: 2 bytes of selector
//     1 read the data port
//     2 DMA: 2 bytes of descriptor offset in RAM, 16 bytes of descriptor,
//       then the address is written as the guest does (high, then low half)
//     3 DMA address halves: 4 bytes high, 4 bytes low, each written raw
//     4 a raw write: offset byte, size byte, that many data bytes (max 8)
//     5 a raw read: offset byte, size byte
//     6 poke RAM: 2 bytes offset, 1 byte value
#include "devices/fw_cfg/fw_cfg.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace {

using namespace hostvisor;

constexpr uint64_t kRamSize = 64 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory* memory = [] {
    auto created = GuestMemory::create({{GuestAddress(0), kRamSize}});
    if (!created) __builtin_trap();
    return new GuestMemory(std::move(*created));
  }();
  if (!memory->fill(GuestAddress(0), 0, kRamSize)) __builtin_trap();
  FwCfg device(*memory);
  if (!device.set_item(fw_cfg::kRamSize, std::vector<uint8_t>(8, 0x11)) ||
      !device.add_file("etc/e820", std::vector<uint8_t>(100, 0x22)) || !device.add_file("bootorder", {}) ||
      !device.set_item(fw_cfg::kArchLocal | 3, std::vector<uint8_t>(70000, 0x33)))
    __builtin_trap();

  size_t i = 0;
  auto next = [&]() -> uint8_t { return i < size ? data[i++] : 0; };
  while (i < size) {
    const uint8_t op = next() & 7;
    switch (op) {
      case 0: {
        const uint8_t selector[2] = {next(), next()};
        device.write(fw_cfg::kSelectorOffset, selector);
        break;
      }
      case 1: {
        uint8_t b;
        device.read(fw_cfg::kDataOffset, std::span(&b, 1));
        break;
      }
      case 2: {
        const uint64_t at = (uint64_t{next()} << 8 | next()) % kRamSize;
        uint8_t descriptor[16];
        for (auto& b : descriptor) b = next();
        (void)memory->write(GuestAddress(at), std::span(descriptor, sizeof descriptor));  // may straddle the end
        const uint8_t high[4] = {0, 0, 0, 0};
        const uint8_t low[4] = {0, 0, static_cast<uint8_t>(at >> 8), static_cast<uint8_t>(at)};
        device.write(fw_cfg::kDmaOffset, high);
        device.write(fw_cfg::kDmaOffset + 4, low);
        break;
      }
      case 3: {
        uint8_t high[4], low[4];
        for (auto& b : high) b = next();
        for (auto& b : low) b = next();
        device.write(fw_cfg::kDmaOffset, high);
        device.write(fw_cfg::kDmaOffset + 4, low);
        break;
      }
      case 4: {
        const uint64_t offset = next() % (fw_cfg::kPortCount + 4);
        const size_t n = next() % 9;
        uint8_t bytes[8];
        for (size_t k = 0; k < n; ++k) bytes[k] = next();
        device.write(offset, std::span<const uint8_t>(bytes, n));
        break;
      }
      case 5: {
        const uint64_t offset = next() % (fw_cfg::kPortCount + 4);
        uint8_t bytes[8];
        device.read(offset, std::span(bytes, next() % 9));
        break;
      }
      case 6: {
        const uint64_t at = (uint64_t{next()} << 8 | next()) % kRamSize;
        const uint8_t value = next();
        (void)memory->write(GuestAddress(at), std::span(&value, 1));
        break;
      }
      default: break;
    }
  }
  // Whatever state the guest reached must save and restore.
  if (!device.restore(device.save())) __builtin_trap();
  return 0;
}
