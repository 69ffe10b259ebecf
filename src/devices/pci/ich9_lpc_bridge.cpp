#include "devices/pci/ich9_lpc_bridge.h"

#include <algorithm>
#include <array>

#include "devices/pci/pci_layout.h"

namespace hostvisor {

Ich9LpcBridge::Ich9LpcBridge(uint16_t pm_base)
    : config_(PciConfigSpace::Identity{.vendor_id = ich9::kLpcVendor,
                                       .device_id = ich9::kLpcDevice,
                                       .revision = 2,
                                       .class_code = 0x060100,  // bridge, ISA bridge
                                       .subsystem_vendor_id = pci::kQemuSubsystemVendor,
                                       .subsystem_id = pci::kQemuSubsystemId}) {
  config_.set_raw_u32(ich9::kPmbase, (pm_base & 0xff80u) | ich9::kPmbaseRte);
  config_.set_raw_u8(ich9::kAcpiCntl, ich9::kAcpiEnable);
  const uint8_t sci_mask = ich9::kSciIrqSelectMask;
  config_.set_writable(ich9::kAcpiCntl, std::span(&sci_mask, 1));
  std::array<uint8_t, 4> pirq_masks;
  pirq_masks.fill(ich9::kPirqMask);
  for (uint16_t base : {ich9::kPirqARouting, ich9::kPirqERouting}) {
    for (uint16_t i = 0; i < 4; ++i) config_.set_raw_u8(base + i, ich9::kPirqDisabled);
    config_.set_writable(base, pirq_masks);
  }
  const std::array<uint8_t, 4> rcba_mask = {ich9::kRcbaMask & 0xff, (ich9::kRcbaMask >> 8) & 0xff,
                                            (ich9::kRcbaMask >> 16) & 0xff, ich9::kRcbaMask >> 24};
  config_.set_writable(ich9::kRcba, rcba_mask);
}

void Ich9LpcBridge::bar_read(int, uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0xff); }

}  // namespace hostvisor
