// Interrupts through KVM's in-kernel irqchip: KVM_IRQ_LINE drives an
// IOAPIC/PIC pin, KVM_SIGNAL_MSI delivers an MSI to the LAPICs. Both are
// single ioctls on the VM fd, so any thread may call them.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "hv/interrupts.h"

namespace hostvisor::kvm {

class KvmInterruptController final : public InterruptController {
 public:
  KvmInterruptController(int vm_fd, bool has_signal_msi) : vm_fd_(vm_fd), has_signal_msi_(has_signal_msi) {}

  // The interface cannot report failure (devices have nobody to tell), so
  // these log it; the try_ forms return it, for callers and tests that care.
  void set_irq_line(uint32_t gsi, bool level) override;
  void signal_msi(uint64_t address, uint32_t data) override;

  Result<void> try_set_irq_line(uint32_t gsi, bool level);
  // True when delivered, false when the guest has the interrupt blocked
  // (e.g. its LAPIC software-disabled).
  Result<bool> try_signal_msi(uint64_t address, uint32_t data);

 private:
  int vm_fd_;  // owned by the KvmVm, which owns this
  bool has_signal_msi_;
};

}  // namespace hostvisor::kvm
