// Drives a 16550A UART with a random sequence of register reads and writes,
// host input, resets and snapshot round trips, as a hostile guest and host
// would, and checks invariants after every step. Input format, repeated:
//   op byte: bits 0-2 register, bits 3-5 action, bits 6-7 length/size hint
//   actions 0-2: read, 3-5: write (next byte is the value),
//   6: host input (next byte n, then up to n bytes), 7: reset or save/restore.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "devices/legacy/serial_8250.h"
#include "hv/interrupts.h"

namespace {

using hostvisor::IrqLine;
using hostvisor::Serial8250;

class LevelTracker : public hostvisor::InterruptController {
 public:
  void set_irq_line(uint32_t, bool level) override { this->level = level; }
  void signal_msi(uint64_t, uint32_t) override {}
  bool level = false;
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_state(const Serial8250::State& s) {
  check(s.rx_fifo.size() <= Serial8250::kFifoSize);
  check(s.input_buffer.size() <= Serial8250::kInputBufferSize);
  check((s.ier & 0xf0) == 0);
  check((s.mcr & 0xe0) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  LevelTracker irq;
  size_t transmitted = 0;
  Serial8250 uart([&transmitted](std::span<const uint8_t> bytes) { transmitted += bytes.size(); }, IrqLine(&irq, 4));
  size_t i = 0;
  auto next = [&]() -> uint8_t { return i < size ? data[i++] : 0; };
  while (i < size) {
    const uint8_t op = next();
    const uint8_t reg = op & 7;
    const uint8_t action = (op >> 3) & 7;
    const size_t width = size_t{1} << (op >> 6);  // 1, 2, 4 or 8 byte accesses
    const size_t span = width <= Serial8250::kRegisterCount - reg ? width : 1;
    if (action <= 2) {
      uint8_t out[8];
      uart.read(reg, std::span(out, span));
    } else if (action <= 5) {
      uint8_t in[8];
      for (size_t k = 0; k < span; ++k) in[k] = next();
      const size_t before = transmitted;
      uart.write(reg, std::span(in, span));
      check(transmitted - before <= span);
    } else if (action == 6) {
      const size_t n = next();
      const size_t take = n <= size - i ? n : size - i;
      const size_t space = uart.input_space();
      const size_t accepted = uart.enqueue_input(std::span(data + i, take));
      check(accepted <= take && accepted <= space);
      i += take;
    } else if (op & 0x40) {
      uart.reset();
      check(!irq.level);
    } else {
      const Serial8250::State saved = uart.save();
      check(uart.restore(saved).ok());
      const Serial8250::State again = uart.save();
      check(again.rx_fifo == saved.rx_fifo && again.input_buffer == saved.input_buffer && again.ier == saved.ier &&
            again.mcr == saved.mcr && again.lcr == saved.lcr && again.fcr == saved.fcr);
    }
    const Serial8250::State s = uart.save();
    check_state(s);
    // The PC gates the UART's interrupt with OUT2.
    if (irq.level) check(s.mcr & Serial8250::kMcrOut2);
  }
  return 0;
}
