#include "devices/pci/pci_host_bridge.h"

#include <algorithm>
#include <array>

#include "devices/pci/pci_layout.h"

namespace hostvisor {

PciHostBridge::PciHostBridge()
    : config_(PciConfigSpace::Identity{.vendor_id = pci::kHostBridgeVendor,
                                       .device_id = pci::kHostBridgeDevice,
                                       .revision = 0,
                                       .class_code = 0x060000,  // bridge, host bridge
                                       // QEMU's "virtual machine" subsystem: SeaBIOS
                                       // reads it to know it runs on QEMU's platform
                                       // (fw_cfg, the ACPI loader) rather than on
                                       // bare hardware.
                                       .subsystem_vendor_id = pci::kQemuSubsystemVendor,
                                       .subsystem_id = pci::kQemuSubsystemId}) {
  // ECAM decodes at one fixed place, so PCIEXBAR says so and is read-only:
  // firmware that programs QEMU's address (all of it here) reads back what
  // it wrote, and any other value reads back where ECAM really is.
  const uint64_t pciexbar = pci::kEcamBase | q35::kPciexbarLength256 | q35::kPciexbarEnable;
  config_.set_raw_u32(q35::kPciexbar, static_cast<uint32_t>(pciexbar));
  config_.set_raw_u32(q35::kPciexbar + 4, static_cast<uint32_t>(pciexbar >> 32));
  config_.set_raw_u8(q35::kSmram, q35::kSmramBaseSegment);
  config_.set_raw_u8(q35::kEsmramc, q35::kEsmramcCacheBits);
  set_unlocked_masks();
}

void PciHostBridge::set_unlocked_masks() {
  std::array<uint8_t, q35::kPamCount> pam_masks;
  pam_masks.fill(q35::kPamMask);
  pam_masks[0] = q35::kPam0Mask;
  config_.set_writable(q35::kPam0, pam_masks);
  const uint8_t smram_mask = q35::kSmramOpen | q35::kSmramClosed | q35::kSmramLock | q35::kSmramGlobalEnable;
  config_.set_writable(q35::kSmram, std::span(&smram_mask, 1));
  const uint8_t esmramc_mask = q35::kEsmramcHighEnable | q35::kEsmramcTsegSize | q35::kEsmramcTsegEnable;
  config_.set_writable(q35::kEsmramc, std::span(&esmramc_mask, 1));
}

void PciHostBridge::config_write(uint16_t offset, unsigned size, uint32_t value) {
  config_.write(offset, size, value);
  apply_smram_lock();
}

Result<void> PciHostBridge::restore(const State& state) {
  // The saved bytes are checked against the unlocked masks (the lock only
  // narrows them); the lock then follows from whichever bytes are in place.
  set_unlocked_masks();
  auto restored = config_.restore(state.config);
  apply_smram_lock();
  return restored;
}

void PciHostBridge::apply_smram_lock() {
  if (!(config_.raw_u8(q35::kSmram) & q35::kSmramLock)) return;
  config_.set_raw_u8(q35::kSmram, config_.raw_u8(q35::kSmram) & ~q35::kSmramOpen);
  const uint8_t smram_mask = q35::kSmramClosed, esmramc_mask = 0;
  config_.set_writable(q35::kSmram, std::span(&smram_mask, 1));
  config_.set_writable(q35::kEsmramc, std::span(&esmramc_mask, 1));
}

void PciHostBridge::bar_read(int, uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0xff); }

}  // namespace hostvisor
