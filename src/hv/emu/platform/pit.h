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

  struct Channel {
    uint8_t mode = 0;    // 0-5
    uint8_t access = 3;  // 1 lobyte, 2 hibyte, 3 lobyte then hibyte
    bool bcd = false;
    bool gate = true;
    uint32_t count = 0x10000;      // reload value (0 written = 65536 / 10000 BCD)
    bool counting = false;         // a count is loaded and running
    bool armed = true;             // modes 1/5: waiting for a gate trigger
    uint64_t elapsed_ticks = 0;    // input clocks counted since the count was loaded/triggered
    bool write_high_next = false;  // lobyte/hibyte write flip-flop
    uint8_t write_low = 0;
    bool read_high_next = false;  // read flip-flop (unlatched reads)
    bool null_count = true;
    bool latched = false;
    uint16_t latched_value = 0;
    bool latched_high_next = false;  // latched two-byte read in progress
    bool status_latched = false;
    uint8_t status = 0;
  };
  struct State {
    std::array<Channel, 3> channels{};
  };
  State save() const;
  void restore(const State& state);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hostvisor::emu
