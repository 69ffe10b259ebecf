// The machine's virtio-mmio transports. Each device added takes the next of
// the fixed slots in the layout's virtio-mmio window (arch/x86_64/layout.h:
// slot i at kVirtioMmioStart + i * kVirtioMmioStride, IOAPIC GSI
// kVirtioMmioFirstGsi + i) and is described to the guest in the ACPI DSDT,
// where Linux's virtio_mmio driver finds it.
#pragma once

#include <memory>
#include <vector>

#include "arch/x86_64/acpi/acpi_tables.h"
#include "base/result.h"
#include "devices/bus/bus.h"
#include "devices/virtio/mmio/virtio_mmio_device.h"
#include "hv/interrupts.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class VirtioMmioSlots {
 public:
  // `bus`, `interrupts` and `memory` must outlive the slots and their devices.
  VirtioMmioSlots(Bus& bus, InterruptController& interrupts, GuestMemory& memory)
      : bus_(bus), interrupts_(interrupts), memory_(memory) {}

  // Puts `device` on the bus in the next free slot. Fails when every slot
  // is taken (the window has one GSI per slot).
  Result<std::shared_ptr<VirtioMmioDevice>> add(std::shared_ptr<VirtioDevice> device);

  // What the DSDT says about each transport, in slot order.
  const std::vector<acpi::VirtioMmioDescription>& descriptions() const { return descriptions_; }

 private:
  Bus& bus_;
  InterruptController& interrupts_;
  GuestMemory& memory_;
  std::vector<std::shared_ptr<VirtioMmioDevice>> devices_;
  std::vector<acpi::VirtioMmioDescription> descriptions_;
};

}  // namespace hostvisor
