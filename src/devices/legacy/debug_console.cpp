#include "devices/legacy/debug_console.h"

#include <cstring>

namespace hostvisor {

void DebugConsole::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset == 0 && !data.empty()) data[0] = kPresentMagic;
}

void DebugConsole::write(uint64_t offset, std::span<const uint8_t> data) {
  // Only the low byte of a wider write is a character, as on QEMU.
  if (offset == 0 && !data.empty() && sink_) sink_(data.first(1));
}

}  // namespace hostvisor
