#include "devices/legacy/serial_8250.h"

#include <algorithm>
#include <utility>

namespace hostvisor {

namespace {
// Modem-status inputs seen when nothing but a host terminal is attached: the
// "cable" is always ready (CTS, DSR, DCD), the phone never rings.
constexpr uint8_t kMsrIdleInputs = Serial8250::kMsrCts | Serial8250::kMsrDsr | Serial8250::kMsrDcd;
}  // namespace

Serial8250::Serial8250(OutputSink sink, IrqLine irq, std::string name)
    : name_(std::move(name)), sink_(std::move(sink)), irq_(irq) {
  std::lock_guard lock(mutex_);
  reset_locked();
}

void Serial8250::reset() {
  std::lock_guard lock(mutex_);
  reset_locked();
}

void Serial8250::reset_locked() {
  ier_ = fcr_ = lcr_ = mcr_ = lsr_errors_ = scr_ = 0;
  dll_ = 0x0c;  // 9600 baud, the BIOS default; only stored
  dlm_ = 0;
  msr_ = kMsrIdleInputs;
  thre_interrupt_ = false;
  rx_fifo_.clear();
  input_buffer_.clear();
  input_refused_ = false;
  update_irq();
}

void Serial8250::set_input_space_notifier(std::function<void()> notifier) {
  std::lock_guard lock(mutex_);
  input_space_notifier_ = std::move(notifier);
}

// Wider accesses reach the UART as consecutive byte cycles, as on the ISA bus.
void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
      const uint64_t reg = offset + i;
      data[i] = reg < kRegisterCount ? read_register(static_cast<uint8_t>(reg)) : 0xff;
    }
    if (input_refused_ && input_buffer_.size() < kInputBufferSize) {
      input_refused_ = false;
      notify = input_space_notifier_;
    }
  }
  if (notify) notify();
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
  // At most one byte per register in the access, so no allocation per byte.
  TransmitBatch transmitted;
  uint64_t ticket = 0;
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
      const uint64_t reg = offset + i;
      if (reg < kRegisterCount) write_register(static_cast<uint8_t>(reg), data[i], &transmitted);
    }
    if (transmitted.count == 0 || !sink_) return;
    ticket = next_sink_ticket_++;
  }
  // The sink runs with no device lock held, so a slow sink (a blocked
  // terminal) stalls neither input nor register reads, and the sink may read
  // registers itself. Tickets taken under the device lock keep two vCPUs
  // writing THR from overtaking each other on the way to it.
  {
    std::unique_lock turn(sink_mutex_);
    sink_turn_.wait(turn, [&] { return sink_serving_ == ticket; });
  }
  // Pass the turn on even if the sink throws, or every later writer would wait forever.
  struct PassTurn {
    Serial8250* uart;
    ~PassTurn() {
      std::lock_guard turn(uart->sink_mutex_);
      ++uart->sink_serving_;
      uart->sink_turn_.notify_all();
    }
  } pass_turn{this};
  sink_(std::span<const uint8_t>(transmitted.bytes.data(), transmitted.count));
}

size_t Serial8250::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  const size_t accepted = std::min(bytes.size(), input_space_locked());
  input_buffer_.insert(input_buffer_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(accepted));
  if (accepted < bytes.size()) input_refused_ = true;
  refill_rx();
  update_irq();
  return accepted;
}

size_t Serial8250::input_space() const {
  std::lock_guard lock(mutex_);
  return input_space_locked();
}

// Input goes straight into the receive FIFO when nothing is queued ahead of
// it, so FIFO room counts too.
size_t Serial8250::input_space_locked() const {
  const size_t fifo_room = (!loopback() && input_buffer_.empty()) ? rx_capacity() - rx_fifo_.size() : 0;
  return kInputBufferSize - input_buffer_.size() + fifo_room;
}

size_t Serial8250::rx_trigger_level() const {
  switch (fcr_ & kFcrTriggerMask) {
    case 0x00: return 1;
    case 0x40: return 4;
    case 0x80: return 8;
    default: return 14;
  }
}

void Serial8250::receive(uint8_t byte) {
  if (rx_fifo_.size() < rx_capacity()) {
    rx_fifo_.push_back(byte);
    return;
  }
  // Overrun. With the FIFO on, the byte in the shift register is lost and the
  // FIFO is untouched; a 16450-style holding register is overwritten instead.
  lsr_errors_ |= kLsrOverrun;
  if (!fifo_enabled()) rx_fifo_.back() = byte;
}

// Moves host bytes into the receiver. In loopback mode the receiver hears only
// the transmitter, so host input waits on the "wire" until loopback ends.
void Serial8250::refill_rx() {
  if (loopback()) return;
  while (rx_fifo_.size() < rx_capacity() && !input_buffer_.empty()) {
    rx_fifo_.push_back(input_buffer_.front());
    input_buffer_.pop_front();
  }
}

uint8_t Serial8250::modem_inputs() const {
  if (!loopback()) return kMsrIdleInputs;
  // Loopback wires the modem-control outputs back to the status inputs.
  uint8_t lines = 0;
  if (mcr_ & kMcrRts) lines |= kMsrCts;
  if (mcr_ & kMcrDtr) lines |= kMsrDsr;
  if (mcr_ & kMcrOut1) lines |= kMsrRi;
  if (mcr_ & kMcrOut2) lines |= kMsrDcd;
  return lines;
}

void Serial8250::update_modem_status() {
  const uint8_t old_lines = msr_ & 0xf0;
  const uint8_t new_lines = modem_inputs();
  const uint8_t changed = old_lines ^ new_lines;
  uint8_t deltas = msr_ & 0x0f;
  if (changed & kMsrCts) deltas |= kMsrDeltaCts;
  if (changed & kMsrDsr) deltas |= kMsrDeltaDsr;
  if (changed & kMsrDcd) deltas |= kMsrDeltaDcd;
  if ((old_lines & kMsrRi) && !(new_lines & kMsrRi)) deltas |= kMsrTrailingRi;
  msr_ = static_cast<uint8_t>(new_lines | deltas);
}

uint8_t Serial8250::pending_interrupt() const {
  if ((ier_ & kIerLineStatus) && (lsr_errors_ & kLsrErrorBits)) return kIirLineStatus;
  if ((ier_ & kIerRxData) && !rx_fifo_.empty())
    return fifo_enabled() && rx_fifo_.size() < rx_trigger_level() ? kIirRxTimeout : kIirRxData;
  if ((ier_ & kIerThre) && thre_interrupt_) return kIirThre;
  if ((ier_ & kIerModemStatus) && (msr_ & 0x0f)) return kIirModemStatus;
  return kIirNone;
}

// The PC routes the UART's interrupt through OUT2, which drivers use as the
// interrupt enable.
void Serial8250::update_irq() { irq_.set_level(pending_interrupt() != kIirNone && (mcr_ & kMcrOut2)); }

uint8_t Serial8250::read_register(uint8_t reg) {
  const bool dlab = lcr_ & kLcrDlab;
  uint8_t value = 0;
  switch (reg) {
    case kRbrThrDll:
      if (dlab) return dll_;
      if (!rx_fifo_.empty()) {
        value = rx_fifo_.front();
        rx_fifo_.pop_front();
        refill_rx();
      }
      break;
    case kIerDlm: return dlab ? dlm_ : ier_;
    case kIirFcr: {
      const uint8_t source = pending_interrupt();
      // Reading IIR acknowledges a THRE interrupt, but only when it is the one reported.
      if (source == kIirThre) thre_interrupt_ = false;
      value = static_cast<uint8_t>(source | (fifo_enabled() ? kIirFifoEnabled : 0));
      break;
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr:
      value = static_cast<uint8_t>(lsr_errors_ | kLsrThre | kLsrTemt);
      if (!rx_fifo_.empty()) value |= kLsrDataReady;
      // Bit 7 flags parity/framing/break data inside the FIFO. Nothing here
      // produces those, so it stays clear.
      lsr_errors_ = 0;
      break;
    case kMsr:
      value = msr_;
      msr_ &= 0xf0;
      break;
    case kScr: return scr_;
  }
  update_irq();
  return value;
}

void Serial8250::write_register(uint8_t reg, uint8_t value, TransmitBatch* transmitted) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (reg) {
    case kRbrThrDll:
      if (dlab) {
        dll_ = value;
        return;
      }
      thre_interrupt_ = false;
      if (loopback())
        receive(value);
      else
        transmitted->bytes[transmitted->count++] = value;
      // Transmission is instant: THR is empty again right away.
      if (ier_ & kIerThre) thre_interrupt_ = true;
      break;
    case kIerDlm: {
      if (dlab) {
        dlm_ = value;
        return;
      }
      const uint8_t old = ier_;
      ier_ = value & 0x0f;
      // Enabling the THRE interrupt while THR is empty (it always is) raises it.
      if ((ier_ & kIerThre) && !(old & kIerThre)) thre_interrupt_ = true;
      break;
    }
    case kIirFcr: {
      const bool enable = value & kFcrEnable;
      // Switching the FIFOs on or off empties them.
      if (enable != fifo_enabled()) rx_fifo_.clear();
      if (enable) {
        if (value & kFcrClearRx) rx_fifo_.clear();
        // kFcrClearTx: the transmit FIFO is always empty here.
        fcr_ = value & (kFcrEnable | kFcrDmaMode | kFcrTriggerMask);
      } else {
        fcr_ = 0;
      }
      refill_rx();
      break;
    }
    case kLcr: lcr_ = value; return;
    case kMcr:
      mcr_ = value & 0x1f;
      update_modem_status();
      refill_rx();  // leaving loopback lets waiting host input in
      break;
    case kLsr: return;  // factory test register on real parts; writes ignored
    case kMsr: return;  // read-only
    case kScr: scr_ = value; return;
  }
  update_irq();
}

Serial8250::State Serial8250::save() const {
  std::lock_guard lock(mutex_);
  State s;
  s.ier = ier_;
  s.fcr = fcr_;
  s.lcr = lcr_;
  s.mcr = mcr_;
  s.lsr_errors = lsr_errors_;
  s.msr = msr_;
  s.scr = scr_;
  s.dll = dll_;
  s.dlm = dlm_;
  s.thre_interrupt = thre_interrupt_;
  s.rx_fifo.assign(rx_fifo_.begin(), rx_fifo_.end());
  s.input_buffer.assign(input_buffer_.begin(), input_buffer_.end());
  return s;
}

Result<void> Serial8250::restore(const State& s) {
  const size_t capacity = (s.fcr & kFcrEnable) ? kFifoSize : 1;
  if (s.rx_fifo.size() > capacity)
    return Error(ErrorCode::kCorrupt, name_ + ": snapshot holds " + std::to_string(s.rx_fifo.size()) +
                                          " bytes in a receive FIFO of " + std::to_string(capacity) +
                                          "; the snapshot is damaged or from an incompatible version");
  if (s.input_buffer.size() > kInputBufferSize)
    return Error(ErrorCode::kCorrupt, name_ + ": snapshot holds " + std::to_string(s.input_buffer.size()) +
                                          " bytes of pending input, more than the " + std::to_string(kInputBufferSize) +
                                          "-byte buffer; the snapshot is damaged or from an incompatible version");
  if ((s.ier & 0xf0) || (s.mcr & 0xe0) || (s.lsr_errors & ~kLsrErrorBits) ||
      (s.fcr & ~(kFcrEnable | kFcrDmaMode | kFcrTriggerMask)))
    return Error(ErrorCode::kCorrupt,
                 name_ +
                     ": snapshot sets reserved UART register bits; the snapshot is damaged or from an "
                     "incompatible version");
  std::lock_guard lock(mutex_);
  ier_ = s.ier;
  fcr_ = s.fcr;
  lcr_ = s.lcr;
  mcr_ = s.mcr;
  lsr_errors_ = s.lsr_errors;
  scr_ = s.scr;
  dll_ = s.dll;
  dlm_ = s.dlm;
  thre_interrupt_ = s.thre_interrupt;
  // The line levels follow MCR; only the change bits are history.
  msr_ = static_cast<uint8_t>(modem_inputs() | (s.msr & 0x0f));
  rx_fifo_.assign(s.rx_fifo.begin(), s.rx_fifo.end());
  input_buffer_.assign(s.input_buffer.begin(), s.input_buffer.end());
  input_refused_ = false;
  refill_rx();
  update_irq();
  return {};
}

void Serial8250::encode_state(StateWriter& out, const State& s) {
  for (uint8_t reg : {s.ier, s.fcr, s.lcr, s.mcr, s.lsr_errors, s.msr, s.scr, s.dll, s.dlm}) out.put(reg);
  out.put_bool(s.thre_interrupt);
  out.put_bytes(s.rx_fifo);
  out.put_bytes(s.input_buffer);
}

Serial8250::State Serial8250::decode_state(StateReader& in) {
  State s;
  for (uint8_t* reg : {&s.ier, &s.fcr, &s.lcr, &s.mcr, &s.lsr_errors, &s.msr, &s.scr, &s.dll, &s.dlm})
    *reg = in.get<uint8_t>();
  s.thre_interrupt = in.get_bool();
  s.rx_fifo = in.get_bytes(kFifoSize);
  s.input_buffer = in.get_bytes(kInputBufferSize);
  return s;
}

}  // namespace hostvisor
