// BusDevice adapters that put the emulated chipset on the machine's buses.
// (The local APIC is per vCPU and is NOT a bus device: the CPU core
// intercepts its page itself, see local_apic.h.)
//
//   port bus: PicPorts at 0x20 (len 2), 0xA0 (len 2), 0x4D0 (len 2);
//             PitPorts at 0x40 (len 4); port 0x61 is the shared
//             SystemControlPortB (devices/legacy/port_61.h) with the Pit as
//             its TimerChannel2
//   MMIO bus: IoApicMmio at IoApic::kDefaultBase (len IoApic::kMmioSize)
// EmuPlatform::attach() inserts them all.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "devices/bus/bus_device.h"

namespace hostvisor::emu {

class Pic;
class Pit;
class IoApic;

// Two consecutive ports of the PIC starting at `base_port` (0x20, 0xA0 or
// 0x4D0). Byte accesses; wider accesses are split into bytes.
class PicPorts final : public BusDevice {
 public:
  PicPorts(Pic& pic, uint16_t base_port) : pic_(pic), base_port_(base_port) {}
  std::string_view name() const override;
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  Pic& pic_;
  uint16_t base_port_;
};

// Ports 0x40-0x43.
class PitPorts final : public BusDevice {
 public:
  explicit PitPorts(Pit& pit) : pit_(pit) {}
  std::string_view name() const override { return "pit"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  Pit& pit_;
};

class IoApicMmio final : public BusDevice {
 public:
  explicit IoApicMmio(IoApic& io_apic) : io_apic_(io_apic) {}
  std::string_view name() const override { return "ioapic"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  IoApic& io_apic_;
};

}  // namespace hostvisor::emu
