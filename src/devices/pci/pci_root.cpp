#include "devices/pci/pci_root.h"

#include <string>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "devices/pci/pci_host_bridge.h"

namespace hostvisor {

PciRoot::PciRoot(InterruptController* interrupts, PciBarMapper* mapper, PciBarAllocator allocator)
    : interrupts_(interrupts), mapper_(mapper), allocator_(std::move(allocator)) {
  host_bridge_ = std::make_shared<PciHostBridge>();
  host_bridge_->attached(PciAttachment{PciAddress{0, 0, 0}, interrupts_, 0});
  slots_[0].device = host_bridge_;
}

uint32_t PciRoot::intx_gsi(uint8_t slot, uint8_t pin) {
  const uint32_t p = pin >= 1 && pin <= 4 ? pin - 1u : 0u;
  return pci::kIntxFirstGsi + (slot + p) % pci::kIntxGsiCount;
}

std::shared_ptr<PciDevice> PciRoot::device_at(uint8_t slot) const {
  std::lock_guard lock(mutex_);
  return slot < slots_.size() ? slots_[slot].device : nullptr;
}

Result<PciAddress> PciRoot::add_device(std::shared_ptr<PciDevice> device, std::optional<uint8_t> slot_number) {
  if (!device) return Error(ErrorCode::kInvalidArgument, "PCI: no device to add");
  std::lock_guard lock(mutex_);
  uint8_t n = 0;
  if (slot_number) {
    n = *slot_number;
    if (n >= pci::kMaxSlots)
      return Error(ErrorCode::kInvalidArgument, "PCI slot " + std::to_string(n) + " does not exist (0-31)");
    if (slots_[n].device)
      return Error(ErrorCode::kBusy, "PCI slot " + std::to_string(n) + " is taken by " +
                                         std::string(slots_[n].device->name()) + "; pick another slot");
  } else {
    for (n = 1; n < pci::kMaxSlots && slots_[n].device; ++n) {
    }
    if (n == pci::kMaxSlots) return Error(ErrorCode::kBusy, "PCI bus 0 is full (31 devices); use fewer PCI devices");
  }

  PciConfigSpace& config = device->config_space();
  for (int i = 0; i < PciConfigSpace::kBarCount; ++i) {
    const PciBarInfo& bar = config.bar_info(i);
    if (bar.size == 0) continue;
    auto address = allocator_.allocate(bar.kind, bar.size);
    if (!address) return address.error().with_context(std::string(device->name()) + " BAR" + std::to_string(i));
    config.set_bar_address(i, *address);
  }
  const uint8_t pin = config.raw_u8(pci_reg::kInterruptPin);
  const uint32_t gsi = pin ? intx_gsi(n, pin) : 0;
  if (pin) config.set_raw_u8(pci_reg::kInterruptLine, static_cast<uint8_t>(gsi));
  config.set_raw_u16(pci_reg::kCommand, config.command() | pci_command::kIoSpace | pci_command::kMemorySpace);
  device->attached(PciAttachment{PciAddress{0, n, 0}, interrupts_, gsi});
  slots_[n].device = std::move(device);
  update_mappings(slots_[n]);
  return PciAddress{0, n, 0};
}

uint32_t PciRoot::config_read(PciAddress address, uint16_t offset, unsigned size) {
  std::lock_guard lock(mutex_);
  if (address.bus != 0 || address.function != 0 || address.device >= pci::kMaxSlots || !slots_[address.device].device)
    return 0xffffffff;
  return slots_[address.device].device->config_read(offset, size);
}

void PciRoot::config_write(PciAddress address, uint16_t offset, unsigned size, uint32_t value) {
  std::lock_guard lock(mutex_);
  if (address.bus != 0 || address.function != 0 || address.device >= pci::kMaxSlots || !slots_[address.device].device)
    return;
  Slot& slot = slots_[address.device];
  slot.device->config_write(offset, size, value);
  const bool touches_command = offset < pci_reg::kCommand + 2 && offset + size > pci_reg::kCommand;
  const bool touches_bars = offset < pci_reg::kBar0 + 4 * PciConfigSpace::kBarCount && offset + size > pci_reg::kBar0;
  if (touches_command || touches_bars) update_mappings(slot);
}

void PciRoot::refresh_mappings() {
  std::lock_guard lock(mutex_);
  for (Slot& slot : slots_)
    if (slot.device) update_mappings(slot);
}

void PciRoot::update_mappings(Slot& slot) {
  PciConfigSpace& config = slot.device->config_space();
  for (int i = 0; i < PciConfigSpace::kBarCount; ++i) {
    const PciBarInfo& bar = config.bar_info(i);
    const std::optional<uint64_t> want = config.bar_decode_address(i);
    const std::optional<uint64_t> have = slot.mapped[i];
    if (want == have) continue;
    if (have && mapper_) mapper_->unmap_bar(slot.device, i, bar.kind, *have);
    slot.mapped[i] = std::nullopt;
    if (want) {
      if (mapper_) {
        auto mapped = mapper_->map_bar(slot.device, i, bar.kind, *want, bar.size);
        if (!mapped) {
          // A guest may program overlapping BARs transiently; the BAR just
          // does not decode until it is moved somewhere free.
          HV_LOG_WARN_LIMITED("PCI {} BAR{}: not decoding at {:#x}: {}", slot.device->name(), i, *want,
                              mapped.error().message());
          slot.device->bar_moved(i, have, std::nullopt);
          continue;
        }
      }
      slot.mapped[i] = want;
    }
    slot.device->bar_moved(i, have, slot.mapped[i]);
  }
}

}  // namespace hostvisor
