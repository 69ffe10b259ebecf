#include "vmm/virtio_mmio_slots.h"

#include <string>

#include "arch/x86_64/layout.h"

namespace hostvisor {

Result<std::shared_ptr<VirtioMmioDevice>> VirtioMmioSlots::add(std::shared_ptr<VirtioDevice> device) {
  if (!device) return Error(ErrorCode::kInvalidArgument, "virtio-mmio: no device to add");
  const size_t slot = devices_.size();
  if (slot >= arch::kVirtioMmioSlots)
    return Error(ErrorCode::kOutOfRange, "virtio-mmio: every one of the " + std::to_string(arch::kVirtioMmioSlots) +
                                             " slots is taken; put the virtio-" + std::string(device->name()) +
                                             " device on PCI (transport=pci) instead");
  const uint64_t base = arch::kVirtioMmioStart + slot * arch::kVirtioMmioStride;
  const uint32_t gsi = arch::kVirtioMmioFirstGsi + static_cast<uint32_t>(slot);
  auto transport = HV_TRY(VirtioMmioDevice::create(std::move(device), memory_, IrqLine(&interrupts_, gsi)));
  HV_TRY(bus_.insert(transport, base, VirtioMmioDevice::kSize));
  devices_.push_back(transport);
  descriptions_.push_back({static_cast<uint32_t>(base), static_cast<uint32_t>(VirtioMmioDevice::kSize), gsi});
  return transport;
}

}  // namespace hostvisor
