// The PC's MC146818 real-time clock and CMOS RAM at ports 0x70 (index) and
// 0x71 (data).
//
// The clock is not a running counter: the guest's time is the host clock plus
// an offset, turned into register values whenever the guest reads them, and
// the offset changes only when the guest sets the clock (SET in register B).
// Interrupt flags (periodic, alarm, update-ended) are computed lazily too: for
// the span of guest time since they were last evaluated, whenever register C
// is read or poll() is called. next_event_ns() tells the event loop when a
// poll() would next raise IRQ 8, so no thread or timer lives in here.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/bus/bus_device.h"
#include "devices/bus/irq_line.h"

namespace hostvisor {

class CmosRtc final : public BusDevice {
 public:
  // Host wall-clock time in nanoseconds since 1970-01-01 00:00:00 UTC.
  using Clock = std::function<int64_t()>;

  static constexpr uint64_t kPortCount = 2;  // index port, data port
  static constexpr size_t kRamSize = 128;

  // Register indices.
  static constexpr uint8_t kSeconds = 0x00, kSecondsAlarm = 0x01, kMinutes = 0x02, kMinutesAlarm = 0x03, kHours = 0x04,
                           kHoursAlarm = 0x05, kDayOfWeek = 0x06, kDayOfMonth = 0x07, kMonth = 0x08, kYear = 0x09,
                           kRegA = 0x0a, kRegB = 0x0b, kRegC = 0x0c, kRegD = 0x0d, kCentury = 0x32;
  // Register A.
  static constexpr uint8_t kRegAUpdateInProgress = 0x80, kRegADividerMask = 0x70, kRegARateMask = 0x0f;
  // Register B.
  static constexpr uint8_t kRegBSet = 0x80, kRegBPeriodicIe = 0x40, kRegBAlarmIe = 0x20, kRegBUpdateIe = 0x10,
                           kRegBSquareWave = 0x08, kRegBBinary = 0x04, kRegB24Hour = 0x02, kRegBDaylightSaving = 0x01;
  // Register C.
  static constexpr uint8_t kRegCIrq = 0x80, kRegCPeriodic = 0x40, kRegCAlarm = 0x20, kRegCUpdate = 0x10;
  // Register D.
  static constexpr uint8_t kRegDValidRam = 0x80;

  struct State {
    std::array<uint8_t, kRamSize> ram{};
    uint8_t index = 0;
    bool nmi_disabled = false;
    int64_t guest_offset_ns = 0;       // guest time minus host clock
    int64_t events_checked_to_ns = 0;  // guest time up to which interrupt flags are evaluated
  };

  // `irq` is IRQ 8 (default: not wired); `clock` defaults to the host's
  // CLOCK_REALTIME.
  explicit CmosRtc(IrqLine irq = {}, Clock clock = {});

  std::string_view name() const override { return "cmos-rtc"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Fills the BIOS memory-size bytes firmware and old kernels read: base and
  // extended memory in KiB, RAM between 16 MiB and 4 GiB and RAM above 4 GiB
  // in 64 KiB units (saturating), and the checksum over 0x10-0x2d.
  void set_memory_size(uint64_t ram_below_4g_bytes, uint64_t ram_above_4g_bytes = 0);

  // Evaluates the interrupt flags up to now and drives IRQ 8.
  void poll();
  // Host clock time (as returned by the clock) at which poll() would next
  // raise the interrupt, or nothing when no enabled source can fire.
  std::optional<int64_t> next_event_ns() const;

  // The chip's RESET input: interrupt enables and flags clear; time and RAM,
  // being battery-backed, stay.
  void reset();

  State save() const;
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  uint8_t read_data();
  void write_data(uint8_t value);
  int64_t guest_now_ns() const;
  bool divider_running() const;
  bool updates_halted() const { return ram_[kRegB] & kRegBSet; }
  void store_time(int64_t guest_seconds);  // writes the time registers in the current format
  int64_t registers_to_seconds() const;    // reads them back
  uint8_t encode(int value) const;
  int decode(uint8_t value) const;
  uint8_t encode_hour(int hour) const;
  bool alarm_fires_between(int64_t after_seconds, int64_t last_seconds) const;
  void evaluate_events(int64_t guest_now);
  void update_irq();

  const Clock clock_;
  IrqLine irq_;

  mutable std::mutex mutex_;
  std::array<uint8_t, kRamSize> ram_{};
  uint8_t index_ = 0;
  bool nmi_disabled_ = false;  // bit 7 of the index port; the NMI itself is not modelled
  int64_t guest_offset_ns_ = 0;
  int64_t events_checked_to_ns_ = 0;
};

}  // namespace hostvisor
