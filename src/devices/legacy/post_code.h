// Port 0x80, the POST diagnostic port. Firmware writes progress codes here and
// Linux writes to it as an I/O delay (io_delay), so it must be claimed or
// every such write would be an unhandled exit. Writes are dropped (the last
// code is kept for diagnostics); reads return 0.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "devices/bus/bus_device.h"

namespace hostvisor {

class PostCode final : public BusDevice {
 public:
  static constexpr uint16_t kPort = 0x80;

  std::string_view name() const override { return "post-code"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The last code written, for diagnostics.
  uint8_t last_code() const { return last_code_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint8_t> last_code_{0};
};

}  // namespace hostvisor
