#include "devices/pci/pci_ecam.h"

namespace hostvisor {

namespace {
struct Cycle {
  PciAddress bdf;
  uint16_t reg;
};
Cycle decode(uint64_t offset) {
  return Cycle{PciAddress{static_cast<uint8_t>(offset >> 20), static_cast<uint8_t>((offset >> 15) & 0x1f),
                          static_cast<uint8_t>((offset >> 12) & 0x7)},
               static_cast<uint16_t>(offset & 0xfff)};
}
bool single_cycle(uint64_t offset, size_t size) {
  return (size == 1 || size == 2 || size == 4) && (offset % 4) + size <= 4;
}
}  // namespace

void PciEcam::read(uint64_t offset, std::span<uint8_t> data) {
  if (single_cycle(offset, data.size())) {
    const Cycle c = decode(offset);
    const uint32_t v = root_.config_read(c.bdf, c.reg, static_cast<unsigned>(data.size()));
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(v >> (8 * i));
    return;
  }
  if (data.size() == 8 && offset % 8 == 0) {
    read(offset, data.subspan(0, 4));
    read(offset + 4, data.subspan(4, 4));
    return;
  }
  for (size_t i = 0; i < data.size(); ++i) read(offset + i, data.subspan(i, 1));
}

void PciEcam::write(uint64_t offset, std::span<const uint8_t> data) {
  if (single_cycle(offset, data.size())) {
    const Cycle c = decode(offset);
    uint32_t v = 0;
    for (size_t i = 0; i < data.size(); ++i) v |= uint32_t{data[i]} << (8 * i);
    root_.config_write(c.bdf, c.reg, static_cast<unsigned>(data.size()), v);
    return;
  }
  if (data.size() == 8 && offset % 8 == 0) {
    write(offset, data.subspan(0, 4));
    write(offset + 4, data.subspan(4, 4));
    return;
  }
  for (size_t i = 0; i < data.size(); ++i) write(offset + i, data.subspan(i, 1));
}

}  // namespace hostvisor
