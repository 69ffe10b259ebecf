// A 16550A UART (the PC's COM ports, 8 registers at 0x3f8/0x2f8/...), complete
// enough for Linux's 8250 driver and for polled guests.
//
// Transmission is instant: a byte written to THR goes straight to the output
// sink, so THR and the transmit FIFO are always empty (LSR.THRE and LSR.TEMT
// stay set) and the divisor latch only stores what the guest wrote. Reception
// has a 16-byte FIFO (1 byte with FIFOs off, as on a 16450) fed from a bounded
// host-side buffer that models "bytes still on the wire": the host enqueues
// input there and the FIFO is refilled from it as the guest reads.
//
// With the FIFO on and fewer bytes waiting than the trigger level, the receive
// interrupt is reported as a character timeout at once: there is no baud clock
// here to time four character periods, and a short burst from the host is over
// as soon as it has been enqueued.
#pragma once

#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/bus/bus_device.h"
#include "devices/bus/irq_line.h"

namespace hostvisor {

class Serial8250 final : public BusDevice {
 public:
  using OutputSink = std::function<void(std::span<const uint8_t>)>;

  static constexpr uint64_t kRegisterCount = 8;  // bus range length
  static constexpr size_t kFifoSize = 16;
  static constexpr size_t kInputBufferSize = 4096;

  // Register offsets (DLAB selects the divisor latch at 0 and 1).
  static constexpr uint8_t kRbrThrDll = 0, kIerDlm = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;

  // IER bits.
  static constexpr uint8_t kIerRxData = 0x01, kIerThre = 0x02, kIerLineStatus = 0x04, kIerModemStatus = 0x08;
  // IIR values (bit 0 set = nothing pending; bits 6-7 set while FIFOs are on).
  static constexpr uint8_t kIirNone = 0x01, kIirModemStatus = 0x00, kIirThre = 0x02, kIirRxData = 0x04,
                           kIirLineStatus = 0x06, kIirRxTimeout = 0x0c, kIirFifoEnabled = 0xc0;
  // FCR bits.
  static constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02, kFcrClearTx = 0x04, kFcrDmaMode = 0x08,
                           kFcrTriggerMask = 0xc0;
  // LCR / MCR bits.
  static constexpr uint8_t kLcrDlab = 0x80;
  static constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08, kMcrLoop = 0x10;
  // LSR bits.
  static constexpr uint8_t kLsrDataReady = 0x01, kLsrOverrun = 0x02, kLsrParity = 0x04, kLsrFraming = 0x08,
                           kLsrBreak = 0x10, kLsrThre = 0x20, kLsrTemt = 0x40, kLsrFifoError = 0x80;
  static constexpr uint8_t kLsrErrorBits = kLsrOverrun | kLsrParity | kLsrFraming | kLsrBreak;
  // MSR bits (low nibble: changes since the last MSR read).
  static constexpr uint8_t kMsrDeltaCts = 0x01, kMsrDeltaDsr = 0x02, kMsrTrailingRi = 0x04, kMsrDeltaDcd = 0x08,
                           kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;

  // Everything a snapshot needs. `lsr_errors` holds only the sticky error
  // bits; DR/THRE/TEMT follow from the FIFOs.
  struct State {
    uint8_t ier = 0;
    uint8_t fcr = 0;  // as last written, reserved bits dropped
    uint8_t lcr = 0;
    uint8_t mcr = 0;
    uint8_t lsr_errors = 0;
    uint8_t msr = 0;
    uint8_t scr = 0;
    uint8_t dll = 0;
    uint8_t dlm = 0;
    bool thre_interrupt = false;
    std::vector<uint8_t> rx_fifo;       // oldest first
    std::vector<uint8_t> input_buffer;  // host bytes not yet in the FIFO, oldest first
  };

  // `sink` receives every transmitted byte, in transmit order, called with no
  // device lock held (it may read UART registers, but must not write THR);
  // `irq` is the UART's interrupt output (IRQ 4 for COM1).
  Serial8250(OutputSink sink, IrqLine irq, std::string name = "serial8250");

  std::string_view name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host side: queues received bytes; returns how many fit (the rest stays
  // with the caller, so nothing is lost when the guest is not reading).
  size_t enqueue_input(std::span<const uint8_t> bytes);
  // How many bytes enqueue_input would accept now.
  size_t input_space() const;
  // Called (outside the device lock, from whichever thread drained it) when
  // the host-side buffer gains room after enqueue_input turned bytes away, so
  // the event loop can resume reading its input.
  void set_input_space_notifier(std::function<void()> notifier);

  // Power-on state; queued host input is dropped.
  void reset();

  State save() const;
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  uint8_t read_register(uint8_t reg);
  struct TransmitBatch {
    std::array<uint8_t, kRegisterCount> bytes;
    size_t count = 0;
  };
  void write_register(uint8_t reg, uint8_t value, TransmitBatch* transmitted);

  bool fifo_enabled() const { return fcr_ & kFcrEnable; }
  bool loopback() const { return mcr_ & kMcrLoop; }
  size_t rx_capacity() const { return fifo_enabled() ? kFifoSize : 1; }
  size_t rx_trigger_level() const;
  size_t input_space_locked() const;
  void receive(uint8_t byte);  // a byte arriving at the receiver (wire or loopback)
  void refill_rx();
  uint8_t modem_inputs() const;
  void update_modem_status();
  uint8_t pending_interrupt() const;  // an IIR value without the FIFO bits
  void update_irq();
  void reset_locked();

  const std::string name_;
  const OutputSink sink_;
  IrqLine irq_;

  mutable std::mutex mutex_;
  uint64_t next_sink_ticket_ = 0;  // guarded by mutex_
  std::mutex sink_mutex_;          // orders sink calls without holding mutex_
  std::condition_variable sink_turn_;
  uint64_t sink_serving_ = 0;  // guarded by sink_mutex_
  std::function<void()> input_space_notifier_;
  bool input_refused_ = false;

  uint8_t ier_ = 0, fcr_ = 0, lcr_ = 0, mcr_ = 0, lsr_errors_ = 0, msr_ = 0, scr_ = 0, dll_ = 0, dlm_ = 0;
  bool thre_interrupt_ = false;
  std::deque<uint8_t> rx_fifo_;
  std::deque<uint8_t> input_buffer_;
};

}  // namespace hostvisor
