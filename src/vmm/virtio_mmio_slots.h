// The machine's virtio-mmio transports. Each device added takes the next of
// the fixed slots in the layout's virtio-mmio window (arch/x86_64/layout.h:
// slot i at kVirtioMmioStart + i * kVirtioMmioStride, IOAPIC GSI
// kVirtioMmioFirstGsi + i) and is described to the guest in the ACPI DSDT,
// where Linux's virtio_mmio driver finds it.
//
// On a backend with fast eventfds (KVM), built with the Vm and the event
// loop, each queue's QueueNotify write (offset 0x50, 4 bytes, the queue
// index) gets an ioeventfd: the vCPU does not exit, and the queue runs on
// the event loop (QueueNotifyEvents, shared with virtio-pci). The slots
// never move, so the registrations last as long as the slots. Interrupts
// stay on the level-triggered line either way.
#pragma once

#include <memory>
#include <vector>

#include "arch/x86_64/acpi/acpi_tables.h"
#include "base/result.h"
#include "devices/bus/bus.h"
#include "devices/virtio/mmio/virtio_mmio_device.h"
#include "hv/hypervisor.h"
#include "hv/interrupts.h"
#include "memory/guest_memory.h"
#include "vmm/event_loop.h"
#include "vmm/queue_notify_events.h"

namespace hostvisor {

class VirtioMmioSlots {
 public:
  // `bus`, `interrupts` and `memory` must outlive the slots and their devices.
  // Without a fast path: every QueueNotify write exits to the bus.
  VirtioMmioSlots(Bus& bus, InterruptController& interrupts, GuestMemory& memory)
      : bus_(bus), interrupts_(interrupts), memory_(memory) {}
  // With the fast path where `vm` has fast eventfds; `vm` and `loop` must
  // outlive the slots too. Interrupts go through vm.interrupts().
  VirtioMmioSlots(Bus& bus, Vm& vm, EventLoop& loop, GuestMemory& memory)
      : bus_(bus), interrupts_(vm.interrupts()), memory_(memory), vm_(&vm), loop_(&loop) {}

  bool notify_fast_path() const { return vm_ && vm_->supports_fast_eventfds(); }

  // Puts `device` on the bus in the next free slot. Fails when every slot
  // is taken (the window has one GSI per slot).
  Result<std::shared_ptr<VirtioMmioDevice>> add(std::shared_ptr<VirtioDevice> device);

  // What the DSDT says about each transport, in slot order.
  const std::vector<acpi::VirtioMmioDescription>& descriptions() const { return descriptions_; }

  // Queues of the device in `slot` whose QueueNotify write has an ioeventfd.
  size_t registered_queues(size_t slot) const;

 private:
  Bus& bus_;
  InterruptController& interrupts_;
  GuestMemory& memory_;
  Vm* vm_ = nullptr;
  EventLoop* loop_ = nullptr;
  std::vector<std::shared_ptr<VirtioMmioDevice>> devices_;
  std::vector<acpi::VirtioMmioDescription> descriptions_;
  // Per slot; null without the fast path. Destroyed before the devices
  // (declared after them): no notify reaches a device being destroyed.
  std::vector<std::unique_ptr<QueueNotifyEvents>> notifies_;
};

}  // namespace hostvisor
