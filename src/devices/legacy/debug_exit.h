// QEMU's isa-debug-exit, so test guests written for QEMU run unchanged: a
// write of v to the port ends the run with exit status (v << 1) | 1 (never 0,
// so a guest cannot fake a clean exit of the whole program).
//
// The register is one byte wide. Map it with kPortCount (4) so that 2- and
// 4-byte writes at the base are claimed too; their low byte is the value,
// which yields the same 8-bit process exit status QEMU gives. Writes that do
// not include the base port are ignored. Reads return 0xff.
#pragma once

#include <cstdint>
#include <span>

#include "devices/bus/bus_device.h"
#include "devices/system_control.h"

namespace hostvisor {

class DebugExit final : public BusDevice {
 public:
  static constexpr uint16_t kDefaultPort = 0xf4;
  static constexpr uint64_t kPortCount = 4;

  // `system` receives the exit request (may be null: writes are then ignored).
  explicit DebugExit(SystemControl* system) : system_(system) {}

  std::string_view name() const override { return "debug-exit"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The exit status a write of `value` requests.
  static int exit_status(uint8_t value) { return (static_cast<int>(value) << 1) | 1; }

 private:
  SystemControl* const system_;  // no state of its own, so no lock
};

}  // namespace hostvisor
