#include "devices/legacy/debug_exit.h"

#include <cstring>

namespace hostvisor {

void DebugExit::read(uint64_t offset, std::span<uint8_t> data) { std::memset(data.data(), 0xff, data.size()); }

void DebugExit::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty() || !system_) return;
  system_->request_exit(exit_status(data[0]));
}

}  // namespace hostvisor
