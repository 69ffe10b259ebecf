// The host bridge at 00:00.0: identifies the root complex to the guest
// (class 06:00, Intel Q35 IDs from pci_layout.h). It has no BARs.
#pragma once

#include "devices/pci/pci_device.h"

namespace hostvisor {

class PciHostBridge : public PciDevice {
 public:
  PciHostBridge();
  std::string_view name() const override { return "pci-host-bridge"; }
  void bar_read(int, uint64_t, std::span<uint8_t> data) override;
  void bar_write(int, uint64_t, std::span<const uint8_t>) override {}
  PciConfigSpace& config_space() override { return config_; }

 private:
  PciConfigSpace config_;
};

}  // namespace hostvisor
