// System control port B at 0x61: the PIT channel 2 gate and speaker enable
// (bits 0-1), parity/channel-check enables (bits 2-3), the DRAM refresh
// toggle (bit 4) and PIT channel 2's output (bit 5).
//
// The refresh bit flips on every read: firmware and old kernels time short
// delays by counting its edges, so a bit that never moved would hang them.
// With the KVM backend the in-kernel PIT claims this port itself; the device
// matters to backends whose PIT lives in user space, which connect channel 2
// through TimerChannel2.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/bus/bus_device.h"

namespace hostvisor {

// PIT channel 2 as seen from port B, implemented by a user-space PIT.
class TimerChannel2 {
 public:
  virtual ~TimerChannel2() = default;
  virtual void set_channel2_gate(bool high) = 0;
  virtual bool channel2_output() = 0;
};

class SystemControlPortB final : public BusDevice {
 public:
  static constexpr uint16_t kPort = 0x61;
  static constexpr uint8_t kTimer2Gate = 0x01, kSpeakerData = 0x02, kParityCheckDisable = 0x04,
                           kChannelCheckDisable = 0x08, kRefreshToggle = 0x10, kTimer2Output = 0x20;
  static constexpr uint8_t kWritableBits = 0x0f;

  struct State {
    uint8_t control = 0;  // the writable bits 0-3
    bool refresh = false;
  };

  // `timer` may be null: channel 2's output then reads as low.
  explicit SystemControlPortB(TimerChannel2* timer = nullptr) : timer_(timer) {}

  std::string_view name() const override { return "port-61"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  void reset();
  State save() const;
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  TimerChannel2* const timer_;
  mutable std::mutex mutex_;
  uint8_t control_ = 0;
  bool refresh_ = false;
};

}  // namespace hostvisor
