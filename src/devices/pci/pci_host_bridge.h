// The host bridge at 00:00.0: identifies the root complex to the guest
// (class 06:00, Intel Q35 MCH IDs from pci_layout.h) and holds the MCH
// registers firmware written for QEMU's Q35 programs: PCIEXBAR, the PAM
// registers, SMRAM and ESMRAMC. It has no BARs.
//
// The registers read back what firmware wrote, with the MCH's writable
// bits and SMRAM's lock, so SeaBIOS and OVMF find the chipset they expect.
// What they switch is fixed in this machine: ECAM always decodes at
// pci::kEcamBase (the address QEMU's firmware programs), the legacy area
// 0xA0000-0xFFFFF is always RAM (PAM "read/write"), and there is no SMM, so
// SMRAM and TSEG never hide any memory.
#pragma once

#include "devices/pci/pci_device.h"

namespace hostvisor {

namespace q35 {
// MCH configuration registers (Intel 3 Series chipset datasheet; QEMU q35.h).
inline constexpr uint16_t kPciexbar = 0x60;  // 64-bit: base, length, enable
inline constexpr uint64_t kPciexbarEnable = 1u << 0;
inline constexpr uint64_t kPciexbarLength256 = 0u << 1;        // 256 buses
inline constexpr uint64_t kPciexbarBaseMask = 0xff0000000ull;  // bits 35:28 for 256 buses
inline constexpr uint16_t kPam0 = 0x90;                        // PAM0-PAM6: 0x90-0x96
inline constexpr unsigned kPamCount = 7;
inline constexpr uint8_t kPam0Mask = 0x30;  // PAM0 only has the 0xF0000 segment's bits (5:4)
inline constexpr uint8_t kPamMask = 0x33;   // two segments, two bits each (RE, WE)
inline constexpr uint16_t kSmram = 0x9d;
inline constexpr uint8_t kSmramOpen = 1u << 6, kSmramClosed = 1u << 5, kSmramLock = 1u << 4,
                         kSmramGlobalEnable = 1u << 3;
inline constexpr uint8_t kSmramBaseSegment = 0x02;  // C_BASE_SEG: compatible SMRAM at 0xA0000, read-only
inline constexpr uint16_t kEsmramc = 0x9e;
inline constexpr uint8_t kEsmramcHighEnable = 1u << 7, kEsmramcError = 1u << 6, kEsmramcCacheBits = 0x38,
                         kEsmramcTsegSize = 0x06, kEsmramcTsegEnable = 1u << 0;
}  // namespace q35

class PciHostBridge : public PciDevice {
 public:
  PciHostBridge();
  std::string_view name() const override { return "pci-host-bridge"; }
  void config_write(uint16_t offset, unsigned size, uint32_t value) override;
  void bar_read(int, uint64_t, std::span<uint8_t> data) override;
  void bar_write(int, uint64_t, std::span<const uint8_t>) override {}
  PciConfigSpace& config_space() override { return config_; }

  // Snapshot: the registers firmware (or the guest) programmed — PAM,
  // SMRAM with its lock, ESMRAMC — as the config space's bytes; the lock's
  // effect on what stays writable follows from them on restore.
  struct State {
    PciConfigSpace::State config;
  };
  State save() const { return {config_.save()}; }
  Result<void> restore(const State& state);
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state) {
    PciConfigSpace::encode_state(out, state.config);
  }
  static State decode_state(StateReader& in) { return {PciConfigSpace::decode_state(in)}; }

 private:
  // The writable bits of the MCH registers before any lock.
  void set_unlocked_masks();
  // Once D_LCK is set, only D_CLS stays writable until reset (the
  // datasheet's lock), and D_OPEN reads as 0.
  void apply_smram_lock();

  PciConfigSpace config_;
};

}  // namespace hostvisor
