// The PCI root complex: bus 0 with up to 32 single-function devices, the
// host bridge in slot 0. It routes configuration cycles (from PciConfigIo at
// 0xCF8 or PciEcam), keeps BAR mappings in step with what the guest
// programs, assigns BAR addresses at plug time as firmware would, and routes
// each device's INTx pin to a GSI (pci_layout.h).
//
// Thread-safe: config cycles from any vCPU are serialised by one lock.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <optional>

#include "base/result.h"
#include "devices/pci/pci_bar_allocator.h"
#include "devices/pci/pci_bar_mapper.h"
#include "devices/pci/pci_device.h"
#include "devices/pci/pci_layout.h"
#include "hv/interrupts.h"

namespace hostvisor {

class PciHostBridge;

class PciRoot {
 public:
  // `interrupts` is handed to devices for MSI-X; `mapper` (may be null: BARs
  // are then tracked but not put on any bus) must outlive the root.
  PciRoot(InterruptController* interrupts, PciBarMapper* mapper,
          PciBarAllocator allocator = PciBarAllocator::standard());

  // Plugs `device` into `slot` (or the lowest free one), programs its BARs
  // from the allocator, sets its Interrupt Line to the routed GSI and enables
  // I/O and memory decoding, as a BIOS would, so a guest booted directly
  // (no firmware) finds it ready.
  Result<PciAddress> add_device(std::shared_ptr<PciDevice> device, std::optional<uint8_t> slot = std::nullopt);

  // Config cycles. `offset` 0-4095; `size` 1, 2 or 4 within one dword.
  // Absent functions read all-ones and ignore writes.
  uint32_t config_read(PciAddress address, uint16_t offset, unsigned size);
  void config_write(PciAddress address, uint16_t offset, unsigned size, uint32_t value);

  // The swizzle: slot `slot`, pin 1-4 (INTA-INTD) -> GSI.
  static uint32_t intx_gsi(uint8_t slot, uint8_t pin);

  std::shared_ptr<PciDevice> device_at(uint8_t slot) const;
  // The host bridge in slot 0 (its MCH registers are snapshot state).
  std::shared_ptr<PciHostBridge> host_bridge() const { return host_bridge_; }

  // After devices restored their config spaces from a snapshot: maps every
  // BAR where the restored registers say it decodes.
  void refresh_mappings();

 private:
  struct Slot {
    std::shared_ptr<PciDevice> device;
    std::array<std::optional<uint64_t>, PciConfigSpace::kBarCount> mapped{};
  };
  // Brings bus mappings in line with the device's BARs and command register.
  void update_mappings(Slot& slot);

  InterruptController* interrupts_;
  PciBarMapper* mapper_;
  PciBarAllocator allocator_;
  mutable std::mutex mutex_;
  std::array<Slot, pci::kMaxSlots> slots_{};
  std::shared_ptr<PciHostBridge> host_bridge_;
};

}  // namespace hostvisor
