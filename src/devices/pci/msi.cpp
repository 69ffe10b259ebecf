#include "devices/pci/msi.h"

#include <array>

namespace hostvisor {

// The capability after its ID and next pointer: message control (2 bytes),
// message address (4), upper address (4), data (2).
namespace {
constexpr uint16_t kControl = 2;
constexpr uint16_t kAddress = 4;
constexpr uint16_t kAddressHigh = 8;
constexpr uint16_t kData = 12;
}  // namespace

Result<void> Msi::install(PciConfigSpace& config) {
  std::array<uint8_t, 12> body{};
  body[0] = kControl64Bit;  // one message (MMC 0), 64-bit
  // Writable: Enable; the address (dword aligned) and its upper half; the data.
  const std::array<uint8_t, 12> writable = {0x01, 0x00, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  offset_ = HV_TRY(config.add_capability(pci_cap_id::kMsi, body, writable));
  return ok();
}

bool Msi::enabled(const PciConfigSpace& config) const {
  return offset_ != 0 && (config.raw_u16(offset_ + kControl) & kControlEnable);
}

bool Msi::signal(const PciConfigSpace& config, InterruptController* interrupts) const {
  if (!enabled(config) || !interrupts) return false;
  const uint64_t address = uint64_t{config.raw_u32(offset_ + kAddressHigh)} << 32 | config.raw_u32(offset_ + kAddress);
  interrupts->signal_msi(address, config.raw_u16(offset_ + kData));
  return true;
}

}  // namespace hostvisor
