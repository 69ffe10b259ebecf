// A PCI MSI capability (PCI Local Bus 3.0, 6.8.1) with one message: 64-bit
// message address, no per-vector masking. For devices that have one
// interrupt and whose drivers expect plain MSI rather than MSI-X (the AHCI
// controller). The message lives in the config space bytes the guest
// programs, so there is no state of its own to save: the config space's
// snapshot carries it.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "devices/pci/pci_config_space.h"
#include "hv/interrupts.h"

namespace hostvisor {

namespace pci_cap_id {
inline constexpr uint8_t kMsi = 0x05;
}

class Msi {
 public:
  // Message Control: enable (bit 0), 64-bit address capable (bit 7).
  static constexpr uint16_t kControlEnable = 1u << 0;
  static constexpr uint16_t kControl64Bit = 1u << 7;

  // Adds the capability to `config`; call once during set-up.
  Result<void> install(PciConfigSpace& config);
  bool enabled(const PciConfigSpace& config) const;
  // Sends the programmed message if MSI is enabled; false if it is not.
  bool signal(const PciConfigSpace& config, InterruptController* interrupts) const;
  uint16_t offset() const { return offset_; }

 private:
  uint16_t offset_ = 0;
};

}  // namespace hostvisor
