// The PC's legacy devices at their fixed ports and ISA interrupt lines
// (arch/x86_64/layout.h names each): COM1, the CMOS RTC, the i8042, port
// 0x61, the POST port, the ACPI PM block and, on request, debug-exit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "base/result.h"
#include "devices/legacy/serial_8250.h"

namespace hostvisor {

class Bus;
class AcpiPmBlock;
class CmosRtc;
class I8042;
class InterruptController;
class Serial8250;
class SystemControl;
class SystemControlPortB;

// The devices the machine keeps talking to after the wiring: the console
// feeds the UART, the RTC is told the memory size and polled by RtcTimer,
// and a snapshot saves the state of each.
struct LegacyDevices {
  std::shared_ptr<Serial8250> serial;
  std::shared_ptr<CmosRtc> rtc;
  std::shared_ptr<I8042> i8042;
  std::shared_ptr<SystemControlPortB> port61;
};

struct LegacyOptions {
  bool debug_exit = false;  // --debug-exit: the port that ends the run with a status
  // Where the UART's output goes (empty: stdout).
  std::function<void(std::span<const uint8_t>)> serial_output;
};

// Puts the devices on `pio_bus`, their interrupts on `irq`. They reach the
// machine (reset, power-off, exit) through `control`, which must outlive them.
Result<LegacyDevices> add_legacy_devices(Bus& pio_bus, InterruptController& irq, SystemControl& control,
                                         const LegacyOptions& options);

// The ACPI PM register block (power-off, reset, PM timer) at the ports the
// FADT describes, raising the SCI.
Result<std::shared_ptr<AcpiPmBlock>> add_acpi_pm_block(Bus& pio_bus, InterruptController& irq, SystemControl& control);

}  // namespace hostvisor
