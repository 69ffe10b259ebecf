#include "devices/acpi/pm_block.h"

#include <time.h>

#include <cstring>

namespace hostvisor {

namespace {
uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

AcpiPmBlock::AcpiPmBlock(SystemControl* system, IrqLine sci, uint8_t reset_value, uint8_t s5_sleep_type, Clock clock)
    : system_(system),
      sci_(std::move(sci)),
      reset_value_(reset_value),
      s5_sleep_type_(s5_sleep_type),
      clock_(clock ? std::move(clock) : Clock(monotonic_ns)) {}

uint32_t AcpiPmBlock::timer_value() const {
  const unsigned __int128 ticks = static_cast<unsigned __int128>(clock_() + timer_offset_ns_) * kTimerHz / 1000000000u;
  return static_cast<uint32_t>(ticks);
}

void AcpiPmBlock::read(uint64_t offset, std::span<uint8_t> data) {
  // Registers are read as a little-endian image of the whole block, so byte,
  // word and dword accesses at any offset see consistent values.
  uint8_t image[kSize] = {};
  {
    std::lock_guard lock(mutex_);
    std::memcpy(image + kEventStatus, &state_.event_status, 2);
    std::memcpy(image + kEventEnable, &state_.event_enable, 2);
    std::memcpy(image + kControl, &state_.control, 2);
    const uint32_t timer = timer_value();
    std::memcpy(image + kTimer, &timer, 4);
    std::memcpy(image + kGpe0Status, &state_.gpe0_status, 2);
    std::memcpy(image + kGpe0Enable, &state_.gpe0_enable, 2);
  }
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < kSize ? image[offset + i] : 0xff;
}

void AcpiPmBlock::write(uint64_t offset, std::span<const uint8_t> data) {
  bool poweroff = false, reset = false;
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
      const uint64_t at = offset + i;
      const uint8_t byte = data[i];
      const int shift = (at % 2) * 8;
      auto set_byte = [&](uint16_t& reg) { reg = static_cast<uint16_t>((reg & ~(0xff << shift)) | (byte << shift)); };
      auto clear_bits = [&](uint16_t& reg) { reg = static_cast<uint16_t>(reg & ~(byte << shift)); };
      if (at < kEventEnable) {
        clear_bits(state_.event_status);  // write one to clear
      } else if (at < kControl) {
        set_byte(state_.event_enable);
      } else if (at < kReset) {
        uint16_t value = state_.control;
        set_byte(value);
        if (value & kSleepEnable) {
          // SLP_EN is write-only and starts the transition to SLP_TYP.
          if (((value >> 10) & 7) == s5_sleep_type_) poweroff = true;
          value = static_cast<uint16_t>(value & ~kSleepEnable);
        }
        state_.control = static_cast<uint16_t>(value | kSciEnable);  // always in ACPI mode
      } else if (at == kReset) {
        if (byte == reset_value_) reset = true;
      } else if (at >= kGpe0Status && at < kGpe0Enable) {
        clear_bits(state_.gpe0_status);
      } else if (at >= kGpe0Enable && at < kSize) {
        set_byte(state_.gpe0_enable);
      }
      // The timer and the gaps are read-only.
    }
    update_sci();
  }
  if (poweroff && system_) system_->request_poweroff();
  if (reset && system_) system_->request_reset();
}

void AcpiPmBlock::press_power_button() {
  std::lock_guard lock(mutex_);
  state_.event_status |= kPowerButtonStatus;
  update_sci();
}

void AcpiPmBlock::raise_gpe0(unsigned bit) {
  if (bit >= 16) return;  // the block has two status bytes
  std::lock_guard lock(mutex_);
  state_.gpe0_status = static_cast<uint16_t>(state_.gpe0_status | (1u << bit));
  update_sci();
}

void AcpiPmBlock::update_sci() {
  const bool pending =
      (state_.event_status & state_.event_enable) != 0 || (state_.gpe0_status & state_.gpe0_enable) != 0;
  sci_.set_level(pending);
}

AcpiPmBlock::State AcpiPmBlock::save() const {
  std::lock_guard lock(mutex_);
  State state = state_;
  state.timer_ns = clock_() + timer_offset_ns_;
  return state;
}

void AcpiPmBlock::restore(const State& state) {
  std::lock_guard lock(mutex_);
  state_ = state;
  timer_offset_ns_ = state.timer_ns - clock_();
  update_sci();
}

void AcpiPmBlock::encode_state(StateWriter& out, const State& s) {
  for (uint16_t reg : {s.event_status, s.event_enable, s.control, s.gpe0_status, s.gpe0_enable}) out.put(reg);
  out.put(s.timer_ns);
}

AcpiPmBlock::State AcpiPmBlock::decode_state(StateReader& in) {
  State s;
  for (uint16_t* reg : {&s.event_status, &s.event_enable, &s.control, &s.gpe0_status, &s.gpe0_enable})
    *reg = in.get<uint16_t>();
  s.timer_ns = in.get<uint64_t>();
  return s;
}

}  // namespace hostvisor
