#include "vmm/virtio_pci_fastpath.h"

#include <sys/eventfd.h>

#include "base/log.h"

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
    unregister_notify_locked(device);
    for (Queue& q : device.queues) loop_.remove(q.event->fd());
    if (auto d = device.device.lock()) d->set_msi_router(nullptr);
  }
}

Result<void> VirtioPciFastPath::add_device(const std::shared_ptr<VirtioPciDevice>& device) {
  Device record;
  record.device = device;
  if (notify_fast_path_) {
    for (uint16_t q = 0; q < device->queue_count(); ++q) {
      auto event = std::make_shared<EventFd>(HV_TRY(EventFd::create(0, EFD_NONBLOCK)));
      std::weak_ptr<VirtioPciDevice> weak = device;
      auto watched = loop_.add(event->fd(), [event, weak, q](uint32_t) {
        // Several notifies between two wake-ups are one: the queue is drained
        // completely each time anyway.
        if (event->consume() == 0) return;
        if (auto d = weak.lock()) d->notify_queue(q);
      });
      if (!watched) {
        for (Queue& done : record.queues) loop_.remove(done.event->fd());
        return std::move(watched).error().with_context(std::string(device->name()) + " queue " + std::to_string(q));
      }
      record.queues.push_back(Queue{std::move(event), std::nullopt});
    }
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
  unregister_notify_locked(it->second);  // the root unmaps first; this only guards against a missed unmap
  register_notify_locked(it->second, address);
  return ok();
}

void VirtioPciFastPath::unmap_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind,
                                  uint64_t address) {
  if (bar == VirtioPciDevice::kBar && kind != PciBarKind::kIo) {
    std::lock_guard lock(mutex_);
    auto it = devices_.find(device.get());
    if (it != devices_.end()) unregister_notify_locked(it->second);
  }
  inner_.unmap_bar(device, bar, kind, address);
}

void VirtioPciFastPath::register_notify_locked(Device& device, uint64_t bar_address) {
  for (uint16_t q = 0; q < device.queues.size(); ++q) {
    Queue& queue = device.queues[q];
    const uint64_t at = bar_address + VirtioPciDevice::notify_offset(q);
    auto registered = vm_.register_ioeventfd(*queue.event, at, kNotifyWriteLength, false, uint64_t{q});
    if (!registered) {
      // The write still reaches the device through the bus, only slower.
      HV_LOG_WARN("virtio-pci queue {}: no ioeventfd at {:#x} ({}); notifies take the exit path", q, at,
                  registered.error().message());
      continue;
    }
    queue.registered_at = at;
  }
}

void VirtioPciFastPath::unregister_notify_locked(Device& device) {
  for (uint16_t q = 0; q < device.queues.size(); ++q) {
    Queue& queue = device.queues[q];
    if (!queue.registered_at) continue;
    auto removed = vm_.unregister_ioeventfd(*queue.event, *queue.registered_at, kNotifyWriteLength, false, uint64_t{q});
    if (!removed)
      HV_LOG_WARN("virtio-pci queue {}: removing the ioeventfd at {:#x}: {}", q, *queue.registered_at,
                  removed.error().message());
    queue.registered_at.reset();
  }
}

size_t VirtioPciFastPath::registered_queues(const PciDevice& device) const {
  std::lock_guard lock(mutex_);
  auto it = devices_.find(&device);
  if (it == devices_.end()) return 0;
  size_t n = 0;
  for (const Queue& q : it->second.queues) n += q.registered_at.has_value();
  return n;
}

}  // namespace hostvisor
