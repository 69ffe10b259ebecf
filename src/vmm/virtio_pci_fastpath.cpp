#include "vmm/virtio_pci_fastpath.h"

namespace hostvisor {

namespace {
// What the driver writes to a notify register: the queue index, 16 bits (4.1.5.2).
constexpr uint32_t kNotifyWriteLength = 2;
}  // namespace

VirtioPciFastPath::VirtioPciFastPath(PciBarMapper& inner, Vm& vm, EventLoop& loop)
    : inner_(inner), vm_(vm), loop_(loop), notify_fast_path_(vm.supports_fast_eventfds()) {
  if (VmMsiRouter::supported(vm)) msi_router_ = std::make_unique<VmMsiRouter>(vm);
}

VirtioPciFastPath::~VirtioPciFastPath() {
  std::lock_guard lock(mutex_);
  for (auto& [key, device] : devices_) {
    device.notifies.reset();  // unregisters the ioeventfds, stops watching the eventfds
    if (auto d = device.device.lock()) d->set_msi_router(nullptr);
  }
}

Result<void> VirtioPciFastPath::add_device(const std::shared_ptr<VirtioPciDevice>& device) {
  Device record;
  record.device = device;
  if (notify_fast_path_) {
    std::weak_ptr<VirtioPciDevice> weak = device;
    record.notifies =
        HV_TRY(QueueNotifyEvents::create(vm_, loop_, "virtio-pci " + std::string(device->name()), device->queue_count(),
                                         kNotifyWriteLength, [weak](uint16_t queue) {
                                           if (auto d = weak.lock()) d->notify_queue(queue);
                                         }));
  }
  // Last, so a device is only ever given the router once it is on the list
  // the destructor takes it back from.
  {
    std::lock_guard lock(mutex_);
    devices_.emplace(device.get(), std::move(record));
  }
  if (msi_router_) device->set_msi_router(msi_router_.get());
  return ok();
}

Result<void> VirtioPciFastPath::map_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind,
                                        uint64_t address, uint64_t size) {
  HV_TRY(inner_.map_bar(device, bar, kind, address, size));
  if (bar != VirtioPciDevice::kBar || kind == PciBarKind::kIo) return ok();
  std::lock_guard lock(mutex_);
  auto it = devices_.find(device.get());
  if (it == devices_.end()) return ok();
  QueueNotifyEvents* notifies = it->second.notifies.get();
  if (!notifies) return ok();
  notifies->unregister();  // the root unmaps first; this only guards against a missed unmap
  notifies->register_at([address](uint16_t queue) { return address + VirtioPciDevice::notify_offset(queue); });
  return ok();
}

void VirtioPciFastPath::unmap_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind,
                                  uint64_t address) {
  if (bar == VirtioPciDevice::kBar && kind != PciBarKind::kIo) {
    std::lock_guard lock(mutex_);
    auto it = devices_.find(device.get());
    if (it != devices_.end() && it->second.notifies) it->second.notifies->unregister();
  }
  inner_.unmap_bar(device, bar, kind, address);
}

size_t VirtioPciFastPath::registered_queues(const PciDevice& device) const {
  std::lock_guard lock(mutex_);
  auto it = devices_.find(&device);
  if (it == devices_.end() || !it->second.notifies) return 0;
  return it->second.notifies->registered_queues();
}

}  // namespace hostvisor
