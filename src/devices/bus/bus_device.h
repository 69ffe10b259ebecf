// A device reachable on a bus (port I/O or MMIO). `offset` is relative to the
// base the device was inserted at; `data` is 1 to 8 bytes, little-endian.
// Devices lock their own state: vCPU threads and the event loop call in
// concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace hostvisor {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual std::string_view name() const = 0;
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

}  // namespace hostvisor
