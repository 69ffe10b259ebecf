// QEMU's ISA debug console (port 0x402 on its PC machines): firmware built
// for QEMU (SeaBIOS, OVMF's debug builds) probes it by reading the port, and
// when it reads back 0xE9 writes its diagnostic log there a byte at a time.
// The bytes go to a sink (a log file, or nowhere), never to the guest's
// console: it is the firmware's debug log, not what a user should see.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "devices/bus/bus_device.h"

namespace hostvisor {

class DebugConsole final : public BusDevice {
 public:
  static constexpr uint8_t kPresentMagic = 0xe9;  // what a read returns: "the port is here"

  using Sink = std::function<void(std::span<const uint8_t>)>;
  explicit DebugConsole(Sink sink) : sink_(std::move(sink)) {}

  std::string_view name() const override { return "debug-console"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  Sink sink_;
};

}  // namespace hostvisor
