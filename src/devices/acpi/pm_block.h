// The ACPI fixed-feature power-management block the FADT points at
// (arch/x86_64/acpi/acpi_tables.h, PmBlock): PM1 event and control
// registers, the reset register, the 3.579545 MHz PM timer and a GPE0 block
// (the VM generation ID's event is on it), in one port range. Writing
// SLP_TYP=S5 with SLP_EN powers the machine off; the reset register resets
// it; the power button and an enabled GPE raise the SCI.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

#include "base/state_codec.h"
#include "devices/bus/bus_device.h"
#include "devices/bus/irq_line.h"
#include "devices/system_control.h"

namespace hostvisor {

class AcpiPmBlock : public BusDevice {
 public:
  // Offsets from the block's base port; they match PmBlock's default ports
  // relative to 0x600.
  static constexpr uint64_t kEventStatus = 0x0, kEventEnable = 0x2, kControl = 0x4, kReset = 0x6, kTimer = 0x8,
                            kGpe0Status = 0x10, kGpe0Enable = 0x12, kSize = 0x14;
  static constexpr uint16_t kTimerStatus = 1u << 0, kPowerButtonStatus = 1u << 8, kWakeStatus = 1u << 15;
  static constexpr uint16_t kSciEnable = 1u << 0, kSleepEnable = 1u << 13;
  static constexpr uint64_t kTimerHz = 3579545;

  using Clock = std::function<uint64_t()>;  // nanoseconds, monotonic

  AcpiPmBlock(SystemControl* system, IrqLine sci, uint8_t reset_value, uint8_t s5_sleep_type, Clock clock = {});

  std::string_view name() const override { return "acpi-pm"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // A press of the power button: the guest's ACPI driver usually shuts down.
  void press_power_button();
  // Sets GPE0 status bit `bit` (0-15): the guest's _Exx/_Lxx method for it
  // runs once the guest enabled it (an SCI).
  void raise_gpe0(unsigned bit);

  struct State {
    uint16_t event_status = 0, event_enable = 0, control = kSciEnable, gpe0_status = 0, gpe0_enable = 0;
    // The PM timer's time base, in ns (save() fills it in): a restore goes
    // on from it, so the guest's clocksource watchdog sees no jump.
    uint64_t timer_ns = 0;
  };
  State save() const;
  void restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  uint32_t timer_value() const;
  void update_sci();  // with mutex_ held

  SystemControl* system_;
  IrqLine sci_;
  uint8_t reset_value_;
  uint8_t s5_sleep_type_;
  Clock clock_;
  mutable std::mutex mutex_;
  State state_;
  uint64_t timer_offset_ns_ = 0;  // added to the clock (wrapping): the timer's time base
};

}  // namespace hostvisor
