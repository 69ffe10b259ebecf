// The Intel 8254 programmable interval timer: three 16-bit counters clocked
// at 1.193182 MHz, ports 0x40-0x42 (counters) and 0x43 (control word).
// Channel 0's output drives ISA IRQ 0 (a rising edge is an interrupt);
// channel 2's gate and output are bits 0 and 5 of port 0x61, which Linux uses
// to calibrate the TSC: the Pit is the TimerChannel2 of the shared port 0x61
// device (devices/legacy/port_61.h); channel 1 (DRAM refresh) counts but
// drives nothing.
//
// All six modes are implemented with gate handling (channels 0 and 1 have
// their gate tied high); binary and BCD counting; lobyte / hibyte / lobyte-
// then-hibyte access; counter latch and read-back (count and status)
// commands. Counter values are computed from the injectable Clock, so a
// ManualClock gives exact, repeatable counts. IRQ 0 edges are scheduled on
// PlatformTimers; if the host falls behind, missed periods are coalesced
// into one edge (the guest's timekeeping copes, as with lost ticks on real
// hardware).
//
// Simplifications: a new count written while mode 2 or 3 runs restarts the
// period at once (the 8254 finishes the current period first), and counts
// start on the write rather than one input clock later (mode 0 raises OUT
// N clocks after the write, the 8254 N+1): both are below what a guest can
// measure through port I/O.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>

#include "devices/legacy/port_61.h"
#include "hv/emu/platform/platform_timers.h"
#include "hv/irqchip_state.h"

namespace hostvisor::emu {

class Pit final : public TimerChannel2 {
 public:
  static constexpr uint16_t kChannel0 = 0x40;
  static constexpr uint16_t kChannel1 = 0x41;
  static constexpr uint16_t kChannel2 = 0x42;
  static constexpr uint16_t kControl = 0x43;

  // The timers (and their clock) must outlive the Pit.
  explicit Pit(PlatformTimers& timers);
  ~Pit() override;
  Pit(const Pit&) = delete;
  Pit& operator=(const Pit&) = delete;

  void reset();

  // Ports 0x40-0x43 (one byte); other ports read 0xFF. Reading 0x43 gives
  // 0xFF (the 8254 has no readable control register).
  uint8_t read_port(uint16_t port);
  void write_port(uint16_t port, uint8_t value);

  // Channel 2's gate (port 0x61 bit 0) and output (port 0x61 bit 5).
  void set_channel2_gate(bool high) override;
  bool channel2_output() override { return channel_output(2); }
  bool channel2_gate() const;
  bool channel_output(unsigned channel);

  // Called on each rising edge of channel 0's output, without the PIT's
  // lock held (EmuPlatform pulses ISA IRQ 0 with it).
  void set_irq0_callback(std::function<void()> callback);

  // The PlatformTimers callback (public for tests): raises the IRQ 0 edge if
  // one is due at `now_ns` and schedules the next.
  void on_timer(uint64_t now_ns);

  // hv/irqchip_state.h. State::port61 is the platform's (EmuPlatform fills
  // it from port 0x61): save() leaves it 0 and restore() ignores it.
  using Channel = PitChannelState;
  using State = PitState;
  State save() const;
  void restore(const State& state);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hostvisor::emu
