// The PC keyboard controller (8042) at ports 0x60 (data) and 0x64 (status /
// command), with a minimal PS/2 keyboard behind it and no mouse.
//
// Enough for firmware and Linux's i8042 + atkbd drivers: the controller
// commands they use (command byte, self and interface tests, port enable and
// disable, output port, A20, reset pulse), a keyboard that answers reset,
// identify, LED, typematic, scan-code-set and enable/disable commands, and an
// auxiliary port whose device never answers (the controller reports a
// timeout, which Linux takes as "no mouse" at once). The keyboard produces no
// key events: there is no host keyboard wired to it.
//
// Bus layout: the device decodes offset 0 as the data port and offset 4 as
// the status/command port, relative to 0x60. Port 0x61 sits in between and
// belongs to another device, so map the device at 0x60 (length 1) and
// command_port() at 0x64 (length 1).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/bus/bus_device.h"
#include "devices/bus/irq_line.h"
#include "devices/system_control.h"

namespace hostvisor {

class I8042 final : public BusDevice, public std::enable_shared_from_this<I8042> {
 public:
  static constexpr uint16_t kDataPort = 0x60, kCommandPort = 0x64;
  static constexpr uint64_t kDataOffset = 0, kCommandOffset = kCommandPort - kDataPort;

  // Status register (read from 0x64).
  static constexpr uint8_t kStatusOutputFull = 0x01, kStatusInputFull = 0x02, kStatusSystem = 0x04,
                           kStatusLastWasCommand = 0x08, kStatusUnlocked = 0x10, kStatusAuxData = 0x20,
                           kStatusTimeout = 0x40, kStatusParity = 0x80;
  // Command byte (controller RAM byte 0).
  static constexpr uint8_t kCtrKeyboardIrq = 0x01, kCtrAuxIrq = 0x02, kCtrSystem = 0x04, kCtrKeyboardDisabled = 0x10,
                           kCtrAuxDisabled = 0x20, kCtrTranslate = 0x40;
  // Output port.
  static constexpr uint8_t kOutNotReset = 0x01, kOutA20 = 0x02, kOutKeyboardFull = 0x10, kOutAuxFull = 0x20;

  // Controller commands.
  static constexpr uint8_t kCmdReadRam = 0x20, kCmdWriteRam = 0x60, kCmdDisableAux = 0xa7, kCmdEnableAux = 0xa8,
                           kCmdTestAux = 0xa9, kCmdSelfTest = 0xaa, kCmdTestKeyboard = 0xab, kCmdDisableKeyboard = 0xad,
                           kCmdEnableKeyboard = 0xae, kCmdReadOutputPort = 0xd0, kCmdWriteOutputPort = 0xd1,
                           kCmdWriteKeyboardOutput = 0xd2, kCmdWriteAuxOutput = 0xd3, kCmdWriteAux = 0xd4,
                           kCmdA20Off = 0xdd, kCmdA20On = 0xdf, kCmdPulseReset = 0xfe;
  static constexpr uint8_t kSelfTestPassed = 0x55, kInterfaceTestPassed = 0x00;
  // Keyboard replies.
  static constexpr uint8_t kKbdAck = 0xfa, kKbdResend = 0xfe, kKbdSelfTestPassed = 0xaa;

  // Bytes each source may have waiting for the output buffer (a PS/2
  // keyboard buffers 16); more are dropped, so a guest that never reads
  // cannot grow them.
  static constexpr size_t kQueueLimit = 16;

  enum class Source : uint8_t { kController, kKeyboard, kAux };
  struct QueuedByte {
    uint8_t value = 0;
    Source source = Source::kController;
    bool timeout = false;  // no device answered on that port
  };

  struct State {
    std::array<uint8_t, 32> ram{};  // ram[0] is the command byte
    uint8_t output_port = 0;
    uint8_t pending_command = 0;  // controller command waiting for its data byte, 0 if none
    bool last_write_was_command = false;
    bool output_full = false;
    QueuedByte output;
    std::vector<QueuedByte> controller_queue, keyboard_queue, aux_queue;
    uint8_t keyboard_pending_command = 0;  // keyboard command waiting for its parameter, 0 if none
    uint8_t keyboard_scancode_set = 2;
    bool keyboard_scanning = true;
    uint8_t keyboard_leds = 0;
    uint8_t keyboard_last_sent = 0;
  };

  // `system` receives reset requests (may be null); `keyboard_irq` is IRQ 1
  // and `aux_irq` IRQ 12.
  I8042(SystemControl* system, IrqLine keyboard_irq, IrqLine aux_irq);

  std::string_view name() const override { return "i8042"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The status/command port as a device of its own, to map at 0x64. Requires
  // the I8042 to be owned by a shared_ptr.
  std::shared_ptr<BusDevice> command_port();

  void reset();
  State save() const;
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  uint8_t read_status() const;
  uint8_t read_data();
  void write_command(uint8_t command, bool* reset_requested);
  void write_data(uint8_t value, bool* reset_requested);
  void keyboard_receive(uint8_t value);
  void queue(std::deque<QueuedByte>& queue, QueuedByte byte);
  void reply(uint8_t value) { queue(controller_queue_, {value, Source::kController, false}); }
  void keyboard_send(uint8_t value);
  void refill_output();
  void update_irq();
  void reset_locked();

  SystemControl* const system_;
  IrqLine keyboard_irq_;
  IrqLine aux_irq_;

  mutable std::mutex mutex_;
  std::array<uint8_t, 32> ram_{};
  uint8_t output_port_ = 0;
  uint8_t pending_command_ = 0;
  bool last_write_was_command_ = false;
  bool output_full_ = false;
  QueuedByte output_;
  std::deque<QueuedByte> controller_queue_, keyboard_queue_, aux_queue_;
  uint8_t keyboard_pending_command_ = 0;
  uint8_t keyboard_scancode_set_ = 2;
  bool keyboard_scanning_ = true;
  uint8_t keyboard_leds_ = 0;
  uint8_t keyboard_last_sent_ = 0;
};

}  // namespace hostvisor
