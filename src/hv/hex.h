// A number in hex for the backends' messages (guest addresses, exit data,
// failure reasons), written as the SDM and the KVM API write them: 0x1f.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace hostvisor {

inline std::string hex(uint64_t value) {
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "0x%llx", static_cast<unsigned long long>(value));
  return buffer;
}

}  // namespace hostvisor
