// PCIe enhanced configuration access (ECAM) on the MMIO bus: the window at
// pci::kEcamBase maps bus << 20 | device << 15 | function << 12 | register
// onto config space, 4 KiB per function, so the whole 4 KiB (extended) space
// is reachable. Accesses of 1/2/4 bytes within a dword go through as one
// cycle; 8-byte accesses become two dword cycles; anything misaligned is
// split into byte cycles.
#pragma once

#include "devices/bus/bus_device.h"
#include "devices/pci/pci_root.h"

namespace hostvisor {

class PciEcam : public BusDevice {
 public:
  explicit PciEcam(PciRoot& root) : root_(root) {}
  std::string_view name() const override { return "pci-ecam"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PciRoot& root_;
};

}  // namespace hostvisor
