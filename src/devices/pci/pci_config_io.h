// Configuration mechanism #1 on the port bus at 0xCF8-0xCFF: a dword write
// to CONFIG_ADDRESS (0xCF8) selects enable/bus/device/function/register, and
// 1/2/4-byte accesses at CONFIG_DATA + n (0xCFC-0xCFF) reach register + n.
// The byte at 0xCF9 is Intel's reset control register: writing RST_CPU (bit
// 2) asks the machine to reset, which Linux uses for `reboot=pci`.
#pragma once

#include <cstdint>
#include <mutex>

#include "base/state_codec.h"
#include "devices/bus/bus_device.h"
#include "devices/pci/pci_root.h"
#include "devices/system_control.h"

namespace hostvisor {

class PciConfigIo : public BusDevice {
 public:
  // `system` may be null (0xCF9 then only stores its value).
  PciConfigIo(PciRoot& root, SystemControl* system = nullptr) : root_(root), system_(system) {}
  std::string_view name() const override { return "pci-config-io"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  uint32_t config_address() const;

  struct State {
    uint32_t config_address = 0;
    uint8_t reset_control = 0;
  };
  State save() const;
  void restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  PciRoot& root_;
  SystemControl* system_;
  mutable std::mutex mutex_;
  uint32_t address_ = 0;
  uint8_t reset_control_ = 0;
};

}  // namespace hostvisor
