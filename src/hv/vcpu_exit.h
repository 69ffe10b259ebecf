// Why Vcpu::run() returned. Both backends produce exactly these; the VMM
// dispatches I/O exits to the buses and acts on the rest.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>

namespace hostvisor {

// IN/OUT, including REP INS/OUTS: `count` transfers of `size` bytes each,
// laid out back to back in `data`. For reads the VMM fills `data` before the
// next run(), which completes the instruction. `data` stays valid until then.
struct PortIoExit {
  uint16_t port = 0;
  uint8_t size = 1;  // 1, 2 or 4
  uint32_t count = 1;
  bool is_write = false;
  std::span<uint8_t> data;
};

// A guest access to an address that is not RAM. Same completion rule as port I/O.
struct MmioExit {
  uint64_t address = 0;
  bool is_write = false;
  std::span<uint8_t> data;  // 1 to 8 bytes
};

// HLT with nothing that could wake the vCPU (no interrupt controller in the
// backend, or interrupts disabled for good).
struct HaltExit {};

// The guest asked the platform to power off, reset, or it shut down by
// triple fault (x86 "shutdown" state).
struct SystemEventExit {
  enum class Kind { kPowerOff, kReset, kTripleFault };
  Kind kind = Kind::kTripleFault;
};

// run() was interrupted by kick() (pause, stop, or a state change request).
struct InterruptedExit {};

// The backend could not continue this vCPU (invalid guest state, an
// emulation failure). `detail` says what happened, for the user.
struct FailureExit {
  std::string detail;
};

using VcpuExit = std::variant<PortIoExit, MmioExit, HaltExit, SystemEventExit, InterruptedExit, FailureExit>;

}  // namespace hostvisor
