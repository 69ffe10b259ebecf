// The ICH9 LPC bridge at 00:1f.0, as far as OVMF reads and programs it on a
// Q35 machine: the ACPI PM I/O base (PMBASE) and ACPI enable, the root
// complex base (RCBA) and the PIRQ routing registers.
//
// Why it is there: OVMF's timer library finds the ACPI PM timer through
// PMBASE. Without the bridge PMBASE reads all-ones, the timer port becomes
// 0x6 (0xFFFFFFFE + 8, wrapped) and OVMF's first delay in DXE never ends.
//
// The PM block of this machine sits at one fixed port (arch kPmEventPort,
// the 0x600 QEMU's firmware also programs), so PMBASE says so and is
// read-only, with ACPI already enabled: OVMF then keeps it as it is (it only
// programs PMBASE when ACPI is off), and any other value would not move the
// block, so it is not pretended. RCBA and the PIRQ registers read back what
// is written; nothing decodes behind them (the machine routes INTx itself,
// pci_layout.h), and no firmware here reads through them.
#pragma once

#include "devices/pci/pci_device.h"

namespace hostvisor {

namespace ich9 {
inline constexpr uint8_t kLpcSlot = 0x1f;
inline constexpr uint16_t kLpcVendor = 0x8086;
inline constexpr uint16_t kLpcDevice = 0x2918;  // 82801IB (ICH9) LPC interface controller
// LPC configuration registers (Intel ICH9 datasheet, chapter 13.1).
inline constexpr uint16_t kPmbase = 0x40;  // 32-bit: I/O base (bits 15:7) | RTE (bit 0, reads 1)
inline constexpr uint32_t kPmbaseRte = 1u << 0;
inline constexpr uint16_t kAcpiCntl = 0x44;  // bit 7 ACPI_EN, bits 2:0 SCI IRQ select
inline constexpr uint8_t kAcpiEnable = 1u << 7;
inline constexpr uint8_t kSciIrqSelectMask = 0x07;
inline constexpr uint16_t kPirqARouting = 0x60;  // PIRQA-D: 0x60-0x63
inline constexpr uint16_t kPirqERouting = 0x68;  // PIRQE-H: 0x68-0x6b
inline constexpr uint8_t kPirqDisabled = 0x80;   // IRQEN: not routed to an ISA IRQ (reset value)
inline constexpr uint8_t kPirqMask = 0x8f;
inline constexpr uint16_t kRcba = 0xf0;  // 32-bit: base (bits 31:14) | enable (bit 0)
inline constexpr uint32_t kRcbaMask = 0xffffc001u;
}  // namespace ich9

class Ich9LpcBridge : public PciDevice {
 public:
  // `pm_base`: the port the machine's ACPI PM block starts at (128-byte aligned).
  explicit Ich9LpcBridge(uint16_t pm_base);
  std::string_view name() const override { return "ich9-lpc"; }
  void bar_read(int, uint64_t, std::span<uint8_t> data) override;
  void bar_write(int, uint64_t, std::span<const uint8_t>) override {}
  PciConfigSpace& config_space() override { return config_; }

  // Snapshot: the registers firmware programmed, as the config space's bytes.
  struct State {
    PciConfigSpace::State config;
  };
  State save() const { return {config_.save()}; }
  Result<void> restore(const State& state) { return config_.restore(state.config); }
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state) {
    PciConfigSpace::encode_state(out, state.config);
  }
  static State decode_state(StateReader& in) { return {PciConfigSpace::decode_state(in)}; }

 private:
  PciConfigSpace config_;
};

}  // namespace hostvisor
