#include "hv/emu/platform/platform_devices.h"

#include <algorithm>

#include "hv/emu/platform/io_apic.h"
#include "hv/emu/platform/pic.h"
#include "hv/emu/platform/pit.h"

namespace hostvisor::emu {

// Port devices are byte-wide; a wider access touches consecutive ports, as an
// ISA bus splits it. Bytes beyond the device's ports read as 0xFF.

std::string_view PicPorts::name() const {
  switch (base_port_) {
    case Pic::kMasterCommand: return "pic-master";
    case Pic::kSlaveCommand: return "pic-slave";
    default: return "pic-elcr";
  }
}

void PicPorts::read(uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < 2 ? pic_.read_port(static_cast<uint16_t>(base_port_ + offset + i)) : 0xff;
  }
}

void PicPorts::write(uint64_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i < 2) pic_.write_port(static_cast<uint16_t>(base_port_ + offset + i), data[i]);
  }
}

void PitPorts::read(uint64_t offset, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < 4 ? pit_.read_port(static_cast<uint16_t>(Pit::kChannel0 + offset + i)) : 0xff;
  }
}

void PitPorts::write(uint64_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i < 4) pit_.write_port(static_cast<uint16_t>(Pit::kChannel0 + offset + i), data[i]);
  }
}

void IoApicMmio::read(uint64_t offset, std::span<uint8_t> data) { io_apic_.mmio_read(offset, data); }

void IoApicMmio::write(uint64_t offset, std::span<const uint8_t> data) { io_apic_.mmio_write(offset, data); }

}  // namespace hostvisor::emu
