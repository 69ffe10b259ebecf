#include "vmm/virtio_mmio_slots.h"

#include <string>

#include "arch/x86_64/layout.h"

namespace hostvisor {

namespace {
// QueueNotify: the driver writes the queue index there, 32 bits (virtio 1.2, 4.2.2).
constexpr uint64_t kQueueNotifyOffset = 0x050;
constexpr uint32_t kQueueNotifyWriteLength = 4;
}  // namespace

Result<std::shared_ptr<VirtioMmioDevice>> VirtioMmioSlots::add(std::shared_ptr<VirtioDevice> device) {
  if (!device) return Error(ErrorCode::kInvalidArgument, "virtio-mmio: no device to add");
  const size_t slot = devices_.size();
  if (slot >= arch::kVirtioMmioSlots)
    return Error(ErrorCode::kOutOfRange, "virtio-mmio: every one of the " + std::to_string(arch::kVirtioMmioSlots) +
                                             " slots is taken; put the virtio-" + std::string(device->name()) +
                                             " device on PCI (transport=pci) instead");
  const uint64_t base = arch::kVirtioMmioStart + slot * arch::kVirtioMmioStride;
  const uint32_t gsi = arch::kVirtioMmioFirstGsi + static_cast<uint32_t>(slot);
  const uint16_t queue_count = device->queue_count();
  const std::string name = "virtio-mmio " + std::string(device->name());
  auto transport = HV_TRY(VirtioMmioDevice::create(std::move(device), memory_, IrqLine(&interrupts_, gsi)));
  std::unique_ptr<QueueNotifyEvents> notifies;
  if (notify_fast_path()) {
    std::weak_ptr<VirtioMmioDevice> weak = transport;
    notifies = HV_TRY(
        QueueNotifyEvents::create(*vm_, *loop_, name, queue_count, kQueueNotifyWriteLength, [weak](uint16_t queue) {
          if (auto d = weak.lock()) d->notify_queue(queue);
        }));
    // Before the guest can see the device: no write lands between the two paths.
    notifies->register_at([base](uint16_t) { return base + kQueueNotifyOffset; });
  }
  HV_TRY(bus_.insert(transport, base, VirtioMmioDevice::kSize));
  devices_.push_back(transport);
  notifies_.push_back(std::move(notifies));
  descriptions_.push_back({static_cast<uint32_t>(base), static_cast<uint32_t>(VirtioMmioDevice::kSize), gsi});
  return transport;
}

size_t VirtioMmioSlots::registered_queues(size_t slot) const {
  return slot < notifies_.size() && notifies_[slot] ? notifies_[slot]->registered_queues() : 0;
}

}  // namespace hostvisor
