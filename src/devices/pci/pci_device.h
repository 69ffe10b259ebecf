// A PCI function as the root complex sees it: a configuration space and up
// to six BARs whose contents the device decodes. The root routes config
// cycles here and maps the BARs on the machine's buses through a
// PciBarMapper, telling the device when a BAR moves.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "devices/pci/pci_config_space.h"
#include "hv/interrupts.h"

namespace hostvisor {

struct PciAddress {
  uint8_t bus = 0;
  uint8_t device = 0;    // 0-31
  uint8_t function = 0;  // 0-7
  auto operator<=>(const PciAddress&) const = default;
};

// What the root tells a device when it is plugged in.
struct PciAttachment {
  PciAddress address;
  InterruptController* interrupts = nullptr;  // for MSI/MSI-X; may be null in tests
  uint32_t intx_gsi = 0;                      // the GSI its INTx pin is routed to (if it has a pin)
};

class PciDevice {
 public:
  virtual ~PciDevice() = default;
  virtual std::string_view name() const = 0;

  // Config cycles from the guest, 1/2/4 bytes inside one dword. The default
  // forwards to config_space(); devices with capability side effects (MSI-X
  // enable, virtio's PCI_CFG window) override and call the default.
  virtual uint32_t config_read(uint16_t offset, unsigned size) { return config_space().read(offset, size); }
  virtual void config_write(uint16_t offset, unsigned size, uint32_t value) {
    config_space().write(offset, size, value);
  }

  // Accesses inside BAR `bar` (offset relative to the BAR base).
  virtual void bar_read(int bar, uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void bar_write(int bar, uint64_t offset, std::span<const uint8_t> data) = 0;

  // Called once when the device is plugged into the root.
  virtual void attached(const PciAttachment& attachment) {}
  // A BAR started/stopped decoding or moved (nullopt = not decoding).
  virtual void bar_moved(int bar, std::optional<uint64_t> old_address, std::optional<uint64_t> new_address) {}

  // The config space, for the root (BAR layout, command register). Callers
  // other than the device hold the root's config lock.
  virtual PciConfigSpace& config_space() = 0;
};

}  // namespace hostvisor
