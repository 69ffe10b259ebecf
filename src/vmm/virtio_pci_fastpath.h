// The virtio-pci fast paths, on a backend with fast eventfds (KVM):
//
//  - notifications: while a device's BAR 0 decodes, each queue's notify
//    register has an ioeventfd (a 2-byte write of the queue index, which is
//    what a driver writes there), so the vCPU goes straight back to the
//    guest and the event loop runs the queue (QueueNotifyEvents, shared with
//    virtio-mmio).
//  - interrupts: the devices' MSI-X vectors go out through a VmMsiRouter
//    (irqfds on MSI routes) instead of InterruptController::signal_msi.
//
// It sits between the PCI root and the machine's BusBarMapper (the root
// maps BARs through it), and follows BAR 0 as the guest moves it or turns
// decoding off. Where the backend has no fast eventfds (emu) it only
// forwards to the inner mapper: notify writes exit to the bus and MSI-X
// goes through the interrupt controller, as before.
//
// Registrations follow the BAR, not the device status: a notify for a queue
// the driver has not enabled (or after a reset) is ignored by the transport
// on either path, and keeping the ioeventfd avoids a window in which a
// write lands nowhere.
//
// Threads and locks: map_bar/unmap_bar come from vCPU threads with the
// root's lock held; `mutex_` here is taken after it and only around Vm
// ioctls (never a device). The event-loop handler takes no lock of ours and
// calls VirtioPciDevice::notify_queue(), whose lock order is the device's own
// (transport -> device -> interrupt state); nothing the device does calls
// back into this class.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "devices/pci/pci_bar_mapper.h"
#include "devices/virtio/pci/virtio_pci_device.h"
#include "hv/hypervisor.h"
#include "vmm/event_loop.h"
#include "vmm/queue_notify_events.h"
#include "vmm/vm_msi_router.h"

namespace hostvisor {

class VirtioPciFastPath final : public PciBarMapper {
 public:
  // `inner` puts BARs on the buses. `inner`, `vm` and `loop` must outlive this.
  VirtioPciFastPath(PciBarMapper& inner, Vm& vm, EventLoop& loop);
  // Unregisters every ioeventfd, stops watching the eventfds and takes the
  // MSI router away from the devices (releasing their irqfds and routes).
  ~VirtioPciFastPath() override;

  bool notify_fast_path() const { return notify_fast_path_; }
  bool msi_fast_path() const { return msi_router_ != nullptr; }

  // Gives `device` the fast paths the backend has. Call before the device
  // is plugged into the root, so its BAR 0 mapping passes through here.
  Result<void> add_device(const std::shared_ptr<VirtioPciDevice>& device);

  Result<void> map_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind, uint64_t address,
                       uint64_t size) override;
  void unmap_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind, uint64_t address) override;

  // Queues of `device` whose notify register currently has an ioeventfd.
  size_t registered_queues(const PciDevice& device) const;

 private:
  struct Device {
    std::weak_ptr<VirtioPciDevice> device;
    std::unique_ptr<QueueNotifyEvents> notifies;  // null without the notify fast path
  };

  PciBarMapper& inner_;
  Vm& vm_;
  EventLoop& loop_;
  const bool notify_fast_path_;
  std::unique_ptr<VmMsiRouter> msi_router_;
  mutable std::mutex mutex_;
  std::map<const PciDevice*, Device> devices_;
};

}  // namespace hostvisor
