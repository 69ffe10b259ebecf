#include "hv/emu/platform/emu_interrupt_controller.h"

#include "base/log.h"
#include "hv/emu/platform/apic_bus.h"
#include "hv/emu/platform/io_apic.h"
#include "hv/emu/platform/pic.h"

namespace hostvisor::emu {

int EmuInterruptController::io_apic_pin(uint32_t line) {
  if (line == kPitIsaIrq) return kPitGsi;
  if (line == kCascadeIrq) return -1;
  if (line < IoApic::kPins) return static_cast<int>(line);
  return -1;
}

void EmuInterruptController::set_irq_line(uint32_t gsi, bool level) {
  if (gsi == kCascadeIrq || gsi >= IoApic::kPins) {
    if (!warned_bad_line_.exchange(true)) {
      HV_LOG_WARN(
          "emu interrupt controller: interrupt line {} is not connected (ISA IRQ 2 is the PIC cascade; "
          "lines go up to {}); the device's interrupt is dropped",
          gsi, IoApic::kPins - 1);
    }
    return;
  }
  if (gsi < kIsaIrqCount) pic_.set_irq(gsi, level);
  io_apic_.set_irq(static_cast<unsigned>(io_apic_pin(gsi)), level);
}

void EmuInterruptController::signal_msi(uint64_t address, uint32_t data) {
  auto delivered = bus_.signal_msi(address, data);
  if (!delivered && !warned_bad_msi_.exchange(true)) {
    HV_LOG_WARN("emu interrupt controller: dropped an MSI: {}", delivered.error().message());
  }
}

}  // namespace hostvisor::emu
