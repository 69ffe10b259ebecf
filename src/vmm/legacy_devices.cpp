#include "vmm/legacy_devices.h"

#include <unistd.h>

#include "arch/x86_64/acpi/acpi_tables.h"
#include "arch/x86_64/layout.h"
#include "devices/acpi/pm_block.h"
#include "devices/bus/bus.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/port_61.h"
#include "devices/legacy/post_code.h"
#include "devices/legacy/serial_8250.h"

namespace hostvisor {

Result<LegacyDevices> add_legacy_devices(Bus& pio_bus, InterruptController& irq, SystemControl& control,
                                         const LegacyOptions& options) {
  LegacyDevices devices;
  Serial8250::OutputSink output = options.console_output;
  if (!output) output = [](std::span<const uint8_t> bytes) { write_all(STDOUT_FILENO, bytes); };
  devices.serial = std::make_shared<Serial8250>(std::move(output), IrqLine(&irq, arch::kCom1Irq));
  HV_TRY(pio_bus.insert(devices.serial, arch::kCom1Port, arch::kCom1PortCount));

  devices.rtc = std::make_shared<CmosRtc>(IrqLine(&irq, arch::kRtcIrq));
  HV_TRY(pio_bus.insert(devices.rtc, arch::kRtcPort, arch::kRtcPortCount));

  devices.i8042 =
      std::make_shared<I8042>(&control, IrqLine(&irq, arch::kI8042KeyboardIrq), IrqLine(&irq, arch::kI8042MouseIrq));
  HV_TRY(pio_bus.insert(devices.i8042, arch::kI8042DataPort, 1));
  HV_TRY(pio_bus.insert(devices.i8042->command_port(), arch::kI8042CommandPort, 1));

  // Port 0x61 reaches us only where the backend has no PIT of its own.
  devices.port61 = std::make_shared<SystemControlPortB>();
  HV_TRY(pio_bus.insert(devices.port61, arch::kPort61, 1));
  HV_TRY(pio_bus.insert(std::make_shared<PostCode>(), arch::kPostCodePort, 1));
  if (options.debug_exit)
    HV_TRY(pio_bus.insert(std::make_shared<DebugExit>(&control), arch::kDebugExitPort, arch::kDebugExitPortCount));
  return devices;
}

Result<std::shared_ptr<AcpiPmBlock>> add_acpi_pm_block(Bus& pio_bus, InterruptController& irq, SystemControl& control) {
  auto pm = std::make_shared<AcpiPmBlock>(&control, IrqLine(&irq, arch::kPmSciIrq), acpi::PmBlock::kResetValue,
                                          acpi::PmBlock::kS5SleepType);
  HV_TRY(pio_bus.insert(pm, arch::kPmEventPort, AcpiPmBlock::kSize));
  return pm;
}

}  // namespace hostvisor
