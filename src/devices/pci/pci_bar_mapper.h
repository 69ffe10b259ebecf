// How BARs reach the machine's buses. The root calls map/unmap whenever a
// BAR starts decoding, moves or stops (guest writes to a BAR or to the
// command register); BusBarMapper does it on the port and MMIO buses, and a
// VMM with extra needs (KVM ioeventfds on a notify region) can wrap it.
#pragma once

#include <cstdint>
#include <memory>

#include "base/result.h"
#include "devices/bus/bus.h"
#include "devices/pci/pci_config_space.h"
#include "devices/pci/pci_device.h"

namespace hostvisor {

class PciBarMapper {
 public:
  virtual ~PciBarMapper() = default;
  virtual Result<void> map_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind, uint64_t address,
                               uint64_t size) = 0;
  virtual void unmap_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind, uint64_t address) = 0;
};

// Inserts a BusDevice per decoding BAR: I/O BARs on `pio`, memory BARs on `mmio`.
class BusBarMapper : public PciBarMapper {
 public:
  BusBarMapper(Bus& mmio, Bus& pio) : mmio_(mmio), pio_(pio) {}
  Result<void> map_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind, uint64_t address,
                       uint64_t size) override;
  void unmap_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind, uint64_t address) override;

 private:
  Bus& mmio_;
  Bus& pio_;
};

}  // namespace hostvisor
