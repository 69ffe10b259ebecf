#include "devices/pci/pci_bar_mapper.h"

#include <string>

namespace hostvisor {

namespace {
// The bus-side face of one BAR: forwards accesses to the device with the BAR index.
class PciBarRegion : public BusDevice {
 public:
  PciBarRegion(std::shared_ptr<PciDevice> device, int bar)
      : device_(std::move(device)), bar_(bar), name_(std::string(device_->name()) + " BAR" + std::to_string(bar)) {}
  std::string_view name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> data) override { device_->bar_read(bar_, offset, data); }
  void write(uint64_t offset, std::span<const uint8_t> data) override { device_->bar_write(bar_, offset, data); }

 private:
  std::shared_ptr<PciDevice> device_;
  int bar_;
  std::string name_;
};
}  // namespace

Result<void> BusBarMapper::map_bar(const std::shared_ptr<PciDevice>& device, int bar, PciBarKind kind, uint64_t address,
                                   uint64_t size) {
  Bus& bus = kind == PciBarKind::kIo ? pio_ : mmio_;
  return bus.insert(std::make_shared<PciBarRegion>(device, bar), address, size);
}

void BusBarMapper::unmap_bar(const std::shared_ptr<PciDevice>&, int, PciBarKind kind, uint64_t address) {
  Bus& bus = kind == PciBarKind::kIo ? pio_ : mmio_;
  (void)bus.remove(address);
}

}  // namespace hostvisor
