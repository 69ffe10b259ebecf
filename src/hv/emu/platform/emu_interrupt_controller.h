// The emu backend's InterruptController: the PC wiring of device interrupt
// lines to the 8259 PICs and the IOAPIC, and MSIs to the APIC bus.
//
// Wiring (the ACPI MADT must describe exactly this):
//  * set_irq_line(n) for n < 16 is ISA IRQ n. It drives PIC input n and
//    IOAPIC pin n, except ISA IRQ 0 (the PIT), which drives IOAPIC pin 2:
//    the MADT needs an Interrupt Source Override bus 0, source 0 -> GSI 2,
//    flags 0 (conforming polarity and trigger = edge, active high). ISA
//    IRQ 2 is the PIC cascade and not a device line: set_irq_line(2) is
//    ignored. IOAPIC pin 0 is not connected (ExtINT from the PIC reaches the
//    BSP through LINT0).
//  * set_irq_line(n) for 16 <= n < 24 drives IOAPIC pin n only (PCI INTx;
//    the MADT/ACPI tables describe them as level-triggered, and as active-low
//    or active-high as they like: levels here are logical).
//  * Anything >= 24 is ignored (a warning, once per controller).
//  * signal_msi decodes the MSI and routes it on the ApicBus; a malformed MSI
//    is dropped with a warning.
// Thread-safe: each component locks itself.
#pragma once

#include <atomic>
#include <cstdint>

#include "hv/interrupts.h"

namespace hostvisor::emu {

class ApicBus;
class IoApic;
class Pic;

class EmuInterruptController final : public InterruptController {
 public:
  static constexpr uint32_t kIsaIrqCount = 16;
  static constexpr uint32_t kPitIsaIrq = 0;
  static constexpr uint32_t kPitGsi = 2;  // the source override
  static constexpr uint32_t kCascadeIrq = 2;

  EmuInterruptController(Pic& pic, IoApic& io_apic, ApicBus& bus) : pic_(pic), io_apic_(io_apic), bus_(bus) {}

  void set_irq_line(uint32_t gsi, bool level) override;
  void signal_msi(uint64_t address, uint32_t data) override;

  // IOAPIC pin an ISA IRQ (or GSI >= 16) arrives at; -1 if none.
  static int io_apic_pin(uint32_t line);

 private:
  Pic& pic_;
  IoApic& io_apic_;
  ApicBus& bus_;
  std::atomic<bool> warned_bad_line_{false};
  std::atomic<bool> warned_bad_msi_{false};
};

}  // namespace hostvisor::emu
