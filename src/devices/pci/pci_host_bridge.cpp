#include "devices/pci/pci_host_bridge.h"

#include <algorithm>

#include "devices/pci/pci_layout.h"

namespace hostvisor {

PciHostBridge::PciHostBridge()
    : config_(PciConfigSpace::Identity{.vendor_id = pci::kHostBridgeVendor,
                                       .device_id = pci::kHostBridgeDevice,
                                       .revision = 0,
                                       .class_code = 0x060000,  // bridge, host bridge
                                       .subsystem_vendor_id = 0,
                                       .subsystem_id = 0}) {}

void PciHostBridge::bar_read(int, uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0xff); }

}  // namespace hostvisor
