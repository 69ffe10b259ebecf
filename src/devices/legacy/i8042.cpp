#include "devices/legacy/i8042.h"

#include <string>
#include <utility>

namespace hostvisor {

namespace {

// Keyboard commands.
constexpr uint8_t kKbdSetLeds = 0xed, kKbdEcho = 0xee, kKbdScancodeSet = 0xf0, kKbdIdentify = 0xf2,
                  kKbdTypematic = 0xf3, kKbdEnable = 0xf4, kKbdDisable = 0xf5, kKbdDefaults = 0xf6,
                  kKbdResendCmd = 0xfe, kKbdReset = 0xff;
// The identify answer of an MF2 keyboard.
constexpr uint8_t kKbdId0 = 0xab, kKbdId1 = 0x83;

// Maps port 0x64 onto the controller's command offset.
class CommandPort final : public BusDevice {
 public:
  explicit CommandPort(std::shared_ptr<I8042> controller) : controller_(std::move(controller)) {}
  std::string_view name() const override { return "i8042-command"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    controller_->read(I8042::kCommandOffset + offset, data);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    controller_->write(I8042::kCommandOffset + offset, data);
  }

 private:
  std::shared_ptr<I8042> controller_;
};

}  // namespace

I8042::I8042(SystemControl* system, IrqLine keyboard_irq, IrqLine aux_irq)
    : system_(system), keyboard_irq_(keyboard_irq), aux_irq_(aux_irq) {
  std::lock_guard lock(mutex_);
  reset_locked();
}

std::shared_ptr<BusDevice> I8042::command_port() { return std::make_shared<CommandPort>(shared_from_this()); }

void I8042::reset() {
  std::lock_guard lock(mutex_);
  reset_locked();
}

void I8042::reset_locked() {
  ram_.fill(0);
  // What firmware leaves behind: both ports' interrupts on, system flag set
  // (the power-on test passed), scan codes translated to set 1.
  ram_[0] = kCtrKeyboardIrq | kCtrAuxIrq | kCtrSystem | kCtrTranslate;
  output_port_ = kOutNotReset | kOutA20;
  pending_command_ = 0;
  last_write_was_command_ = false;
  output_full_ = false;
  output_ = {};
  controller_queue_.clear();
  keyboard_queue_.clear();
  aux_queue_.clear();
  keyboard_pending_command_ = 0;
  keyboard_scancode_set_ = 2;
  keyboard_scanning_ = true;
  keyboard_leds_ = 0;
  keyboard_last_sent_ = 0;
  update_irq();
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t port = offset + i;
    if (port == kDataOffset)
      data[i] = read_data();
    else if (port == kCommandOffset)
      data[i] = read_status();
    else
      data[i] = 0xff;
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  bool reset_requested = false;
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
      const uint64_t port = offset + i;
      if (port == kDataOffset)
        write_data(data[i], &reset_requested);
      else if (port == kCommandOffset)
        write_command(data[i], &reset_requested);
    }
    refill_output();
    update_irq();
  }
  // Outside the lock: the machine may reset this very device in response.
  if (reset_requested && system_) system_->request_reset();
}

uint8_t I8042::read_status() const {
  uint8_t status = kStatusUnlocked;  // commands complete at once, so the input buffer is never full
  if (output_full_) {
    status |= kStatusOutputFull;
    if (output_.source == Source::kAux) status |= kStatusAuxData;
    if (output_.timeout) status |= kStatusTimeout;
  }
  if (ram_[0] & kCtrSystem) status |= kStatusSystem;
  if (last_write_was_command_) status |= kStatusLastWasCommand;
  return status;
}

uint8_t I8042::read_data() {
  // An empty output buffer still reads as the last byte, as on the chip.
  const uint8_t value = output_.value;
  if (output_full_) {
    output_full_ = false;
    output_.timeout = false;
    // Drop the line before loading the next byte so that it makes a fresh
    // edge: ISA interrupts are edge-triggered and drivers read one byte per
    // interrupt.
    update_irq();
    refill_output();
    update_irq();
  }
  return value;
}

void I8042::queue(std::deque<QueuedByte>& q, QueuedByte byte) {
  if (q.size() < kQueueLimit) q.push_back(byte);
}

void I8042::keyboard_send(uint8_t value) {
  keyboard_last_sent_ = value;
  queue(keyboard_queue_, {value, Source::kKeyboard, false});
}

// Controller replies go first; device bytes only while their port is enabled.
void I8042::refill_output() {
  if (output_full_) return;
  std::deque<QueuedByte>* from = nullptr;
  if (!controller_queue_.empty())
    from = &controller_queue_;
  else if (!(ram_[0] & kCtrKeyboardDisabled) && !keyboard_queue_.empty())
    from = &keyboard_queue_;
  else if (!(ram_[0] & kCtrAuxDisabled) && !aux_queue_.empty())
    from = &aux_queue_;
  if (!from) return;
  output_ = from->front();
  from->pop_front();
  output_full_ = true;
}

// Controller replies count as keyboard-side data (IRQ 1), as on the chip.
void I8042::update_irq() {
  const bool aux = output_.source == Source::kAux;
  keyboard_irq_.set_level(output_full_ && !aux && (ram_[0] & kCtrKeyboardIrq));
  aux_irq_.set_level(output_full_ && aux && (ram_[0] & kCtrAuxIrq));
}

void I8042::write_command(uint8_t command, bool* reset_requested) {
  last_write_was_command_ = true;
  pending_command_ = 0;  // a new command abandons one still waiting for data
  if (command >= kCmdReadRam && command < kCmdReadRam + 0x20) {
    reply(ram_[command & 0x1f]);
    return;
  }
  if (command >= kCmdWriteRam && command < kCmdWriteRam + 0x20) {
    pending_command_ = command;
    return;
  }
  if (command >= 0xf0) {
    // Pulse output-port lines: each clear bit of the low nibble pulses one
    // line low; line 0 is the CPU reset.
    if (!(command & 0x01)) *reset_requested = true;
    return;
  }
  switch (command) {
    case kCmdDisableAux: ram_[0] |= kCtrAuxDisabled; break;
    case kCmdEnableAux: ram_[0] &= static_cast<uint8_t>(~kCtrAuxDisabled); break;
    case kCmdTestAux: reply(kInterfaceTestPassed); break;
    case kCmdSelfTest:
      ram_[0] |= kCtrSystem;
      reply(kSelfTestPassed);
      break;
    case kCmdTestKeyboard: reply(kInterfaceTestPassed); break;
    case kCmdDisableKeyboard: ram_[0] |= kCtrKeyboardDisabled; break;
    case kCmdEnableKeyboard: ram_[0] &= static_cast<uint8_t>(~kCtrKeyboardDisabled); break;
    case kCmdReadOutputPort: {
      uint8_t value = output_port_ & static_cast<uint8_t>(~(kOutKeyboardFull | kOutAuxFull));
      if (output_full_) value |= output_.source == Source::kAux ? kOutAuxFull : kOutKeyboardFull;
      reply(value);
      break;
    }
    case kCmdWriteOutputPort:
    case kCmdWriteKeyboardOutput:
    case kCmdWriteAuxOutput:
    case kCmdWriteAux: pending_command_ = command; break;
    case kCmdA20Off: output_port_ &= static_cast<uint8_t>(~kOutA20); break;
    case kCmdA20On: output_port_ |= kOutA20; break;
    default: break;  // unknown commands are ignored, as by most controllers
  }
}

void I8042::write_data(uint8_t value, bool* reset_requested) {
  last_write_was_command_ = false;
  const uint8_t command = pending_command_;
  pending_command_ = 0;
  if (command >= kCmdWriteRam && command < kCmdWriteRam + 0x20) {
    // Bit 7 of the command byte is reserved and reads as zero.
    ram_[command & 0x1f] = (command == kCmdWriteRam) ? (value & 0x7f) : value;
    return;
  }
  switch (command) {
    case kCmdWriteOutputPort:
      output_port_ = value;
      if (!(value & kOutNotReset)) *reset_requested = true;
      return;
    // The controller loads these into its output buffer itself, as if the
    // port had sent them, so a disabled port does not hold them back.
    case kCmdWriteKeyboardOutput: queue(controller_queue_, {value, Source::kKeyboard, false}); return;
    case kCmdWriteAuxOutput: queue(controller_queue_, {value, Source::kAux, false}); return;
    case kCmdWriteAux:
      // No device on the aux port: the controller times out and reports 0xfe.
      queue(aux_queue_, {kKbdResend, Source::kAux, true});
      return;
    default: keyboard_receive(value); return;
  }
}

void I8042::keyboard_receive(uint8_t value) {
  if (const uint8_t command = keyboard_pending_command_; command != 0) {
    keyboard_pending_command_ = 0;
    switch (command) {
      case kKbdSetLeds:
        keyboard_leds_ = value & 0x07;
        keyboard_send(kKbdAck);
        return;
      case kKbdTypematic: keyboard_send(kKbdAck); return;
      case kKbdScancodeSet:
        if (value == 0) {
          keyboard_send(kKbdAck);
          keyboard_send(keyboard_scancode_set_);
        } else if (value <= 3) {
          keyboard_scancode_set_ = value;
          keyboard_send(kKbdAck);
        } else {
          keyboard_send(kKbdResend);
        }
        return;
      default: break;  // not a parameter after all: treat as a command
    }
  }
  switch (value) {
    case kKbdSetLeds:
    case kKbdTypematic:
    case kKbdScancodeSet:
      keyboard_pending_command_ = value;
      keyboard_send(kKbdAck);
      break;
    case kKbdEcho: keyboard_send(kKbdEcho); break;
    case kKbdIdentify:
      keyboard_send(kKbdAck);
      keyboard_send(kKbdId0);
      keyboard_send(kKbdId1);
      break;
    case kKbdEnable:
      keyboard_scanning_ = true;
      keyboard_send(kKbdAck);
      break;
    case kKbdDisable:
      keyboard_scanning_ = false;
      keyboard_send(kKbdAck);
      break;
    case kKbdDefaults: keyboard_send(kKbdAck); break;
    case kKbdResendCmd: {
      const uint8_t last = keyboard_last_sent_;
      keyboard_send(last);
      break;
    }
    case kKbdReset:
      keyboard_queue_.clear();
      keyboard_scancode_set_ = 2;
      keyboard_scanning_ = true;
      keyboard_leds_ = 0;
      keyboard_send(kKbdAck);
      keyboard_send(kKbdSelfTestPassed);
      break;
    default:
      if (value >= 0xf7 && value <= 0xfd) {
        keyboard_send(kKbdAck);  // per-key typematic/make/break modes: accepted, nothing to change
      } else {
        keyboard_send(kKbdResend);
      }
      break;
  }
}

I8042::State I8042::save() const {
  std::lock_guard lock(mutex_);
  State s;
  s.ram = ram_;
  s.output_port = output_port_;
  s.pending_command = pending_command_;
  s.last_write_was_command = last_write_was_command_;
  s.output_full = output_full_;
  s.output = output_;
  s.controller_queue.assign(controller_queue_.begin(), controller_queue_.end());
  s.keyboard_queue.assign(keyboard_queue_.begin(), keyboard_queue_.end());
  s.aux_queue.assign(aux_queue_.begin(), aux_queue_.end());
  s.keyboard_pending_command = keyboard_pending_command_;
  s.keyboard_scancode_set = keyboard_scancode_set_;
  s.keyboard_scanning = keyboard_scanning_;
  s.keyboard_leds = keyboard_leds_;
  s.keyboard_last_sent = keyboard_last_sent_;
  return s;
}

Result<void> I8042::restore(const State& s) {
  for (const auto* q : {&s.controller_queue, &s.keyboard_queue, &s.aux_queue}) {
    if (q->size() > kQueueLimit)
      return Error(ErrorCode::kCorrupt, "i8042: snapshot queues " + std::to_string(q->size()) +
                                            " bytes on one port, more than " + std::to_string(kQueueLimit) +
                                            "; the snapshot is damaged or from an incompatible version");
    for (const QueuedByte& b : *q)
      if (b.source > Source::kAux)
        return Error(ErrorCode::kCorrupt, "i8042: snapshot names an unknown byte source; the snapshot is damaged");
  }
  if (s.output.source > Source::kAux)
    return Error(ErrorCode::kCorrupt, "i8042: snapshot names an unknown byte source; the snapshot is damaged");
  if (s.keyboard_scancode_set < 1 || s.keyboard_scancode_set > 3)
    return Error(ErrorCode::kCorrupt, "i8042: snapshot keyboard scan-code set " +
                                          std::to_string(s.keyboard_scancode_set) +
                                          " is not 1-3; the snapshot is damaged");
  std::lock_guard lock(mutex_);
  ram_ = s.ram;
  output_port_ = s.output_port;
  pending_command_ = s.pending_command;
  last_write_was_command_ = s.last_write_was_command;
  output_full_ = s.output_full;
  output_ = s.output;
  controller_queue_.assign(s.controller_queue.begin(), s.controller_queue.end());
  keyboard_queue_.assign(s.keyboard_queue.begin(), s.keyboard_queue.end());
  aux_queue_.assign(s.aux_queue.begin(), s.aux_queue.end());
  keyboard_pending_command_ = s.keyboard_pending_command;
  keyboard_scancode_set_ = s.keyboard_scancode_set;
  keyboard_scanning_ = s.keyboard_scanning;
  keyboard_leds_ = s.keyboard_leds;
  keyboard_last_sent_ = s.keyboard_last_sent;
  refill_output();
  update_irq();
  return {};
}

namespace {
void put_queued(StateWriter& out, const I8042::QueuedByte& b) {
  out.put(b.value);
  out.put(b.source);
  out.put_bool(b.timeout);
}
I8042::QueuedByte get_queued(StateReader& in) {
  I8042::QueuedByte b;
  b.value = in.get<uint8_t>();
  b.source = in.get<I8042::Source>();
  b.timeout = in.get_bool();
  return b;
}
}  // namespace

void I8042::encode_state(StateWriter& out, const State& s) {
  out.put_raw(s.ram);
  out.put(s.output_port);
  out.put(s.pending_command);
  out.put_bool(s.last_write_was_command);
  out.put_bool(s.output_full);
  put_queued(out, s.output);
  for (const auto* queue : {&s.controller_queue, &s.keyboard_queue, &s.aux_queue}) {
    out.put(static_cast<uint32_t>(queue->size()));
    for (const QueuedByte& b : *queue) put_queued(out, b);
  }
  out.put(s.keyboard_pending_command);
  out.put(s.keyboard_scancode_set);
  out.put_bool(s.keyboard_scanning);
  out.put(s.keyboard_leds);
  out.put(s.keyboard_last_sent);
}

I8042::State I8042::decode_state(StateReader& in) {
  State s;
  in.get_raw(s.ram);
  s.output_port = in.get<uint8_t>();
  s.pending_command = in.get<uint8_t>();
  s.last_write_was_command = in.get_bool();
  s.output_full = in.get_bool();
  s.output = get_queued(in);
  for (auto* queue : {&s.controller_queue, &s.keyboard_queue, &s.aux_queue}) {
    const uint32_t count = in.get<uint32_t>();
    if (count > kQueueLimit) {
      in.fail("i8042 queue of " + std::to_string(count) + " bytes");
      break;
    }
    for (uint32_t i = 0; i < count; ++i) queue->push_back(get_queued(in));
  }
  s.keyboard_pending_command = in.get<uint8_t>();
  s.keyboard_scancode_set = in.get<uint8_t>();
  s.keyboard_scanning = in.get_bool();
  s.keyboard_leds = in.get<uint8_t>();
  s.keyboard_last_sent = in.get<uint8_t>();
  return s;
}

}  // namespace hostvisor
