// How devices raise interrupts, implemented by each backend (KVM: in-kernel
// irqchip via KVM_IRQ_LINE / KVM_SIGNAL_MSI; emu: its own IOAPIC/PIC/LAPIC).
// Devices see only this interface, never the backend.
#pragma once

#include <cstdint>

namespace hostvisor {

class InterruptController {
 public:
  virtual ~InterruptController() = default;
  // Drives global system interrupt line `gsi` (0-15 ISA, 16-23 IOAPIC PCI).
  // Edge-triggered sources pulse it (true then false).
  virtual void set_irq_line(uint32_t gsi, bool level) = 0;
  // Delivers a message-signalled interrupt (PCI MSI / MSI-X).
  virtual void signal_msi(uint64_t address, uint32_t data) = 0;
};

}  // namespace hostvisor
