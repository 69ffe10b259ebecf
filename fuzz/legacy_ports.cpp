// Random port I/O against the CMOS RTC (with a fuzzer-driven clock), the
// i8042 and port 0x61, as a hostile guest would do it. The RTC's date and
// timer arithmetic on guest-written registers is the main target: UBSan
// catches any overflow. Input format, repeated:
//   op byte: bits 0-1 device, bit 2 read/write, bits 3-7 port offset
//   a write takes the next byte as its value; op 0xff moves the clock by the
//   next 8 bytes (signed nanoseconds) and polls the RTC.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/port_61.h"
#include "hv/interrupts.h"

namespace {

using namespace hostvisor;

class NullInterrupts : public InterruptController {
 public:
  void set_irq_line(uint32_t, bool) override {}
  void signal_msi(uint64_t, uint32_t) override {}
};

class NullSystem : public SystemControl {
 public:
  void request_exit(int) override {}
  void request_reset() override {}
  void request_poweroff() override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  NullInterrupts irq;
  NullSystem system;
  int64_t now = 1'700'000'000'000'000'000;
  CmosRtc rtc(IrqLine(&irq, 8), [&now] { return now; });
  rtc.set_memory_size(uint64_t{3} << 30, uint64_t{1} << 40);
  auto kbc = std::make_shared<I8042>(&system, IrqLine(&irq, 1), IrqLine(&irq, 12));
  SystemControlPortB port_b;
  BusDevice* devices[3] = {&rtc, kbc.get(), &port_b};
  const uint64_t spans[3] = {CmosRtc::kPortCount, I8042::kCommandOffset + 1, 1};
  size_t i = 0;
  auto next = [&]() -> uint8_t { return i < size ? data[i++] : 0; };
  while (i < size) {
    const uint8_t op = next();
    if (op == 0xff) {
      int64_t delta = 0;
      uint8_t raw[8] = {};
      for (auto& b : raw) b = next();
      std::memcpy(&delta, raw, sizeof delta);
      if (__builtin_add_overflow(now, delta, &now)) now = delta < 0 ? INT64_MIN : INT64_MAX;
      rtc.poll();
      (void)rtc.next_event_ns();
      continue;
    }
    const unsigned device = (op & 3) % 3;
    const uint64_t offset = (op >> 3) % spans[device];
    uint8_t value = 0;
    if (op & 4) {
      value = next();
      devices[device]->write(offset, std::span(&value, 1));
    } else {
      devices[device]->read(offset, std::span(&value, 1));
    }
  }
  // A snapshot of whatever state the guest reached must restore.
  if (!rtc.restore(rtc.save()).ok() || !kbc->restore(kbc->save()).ok() || !port_b.restore(port_b.save()).ok())
    __builtin_trap();
  return 0;
}
