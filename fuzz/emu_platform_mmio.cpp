// Random guest accesses to the emulated interrupt controllers and timers:
// LAPIC MMIO and MSRs, IOAPIC MMIO, PIC and PIT ports (through the buses, as
// the CPU core dispatches them), device lines, MSIs, and time passing with
// interrupt acknowledgement, as a hostile guest and hostile devices would
// drive them. Nothing may crash, hang or trip ASan/UBSan.
//
// Input format, repeated:
//   op byte: bits 0-2 action, bits 3-7 extra
//     0/1 LAPIC 0/1 MMIO, 2 IOAPIC MMIO, 3 port I/O (0x00-0xff and 0x4d0),
//     4 APIC MSR, 5 device line / MSI, 6 time passes, 7 core-side events;
//   then, as the action needs: a 16-bit offset, a size byte, up to 8 value bytes.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "devices/bus/bus.h"
#include "hv/emu/platform/emu_platform.h"

namespace {

using namespace hostvisor;
using namespace hostvisor::emu;

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(byte() | (byte() << 8)); }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{byte()} << (8 * i);
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

// Dropped-interrupt warnings are expected here by the thousand; they would
// only slow the fuzzer down.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ManualClock clock(1'000'000);
  auto created = EmuPlatform::create({.vcpu_count = 2, .clock = &clock, .start_timer_thread = false});
  if (!created) __builtin_trap();
  EmuPlatform& platform = **created;
  Bus ports("io", 0x10000);
  Bus mmio("mmio");
  if (!platform.attach(ports, mmio)) __builtin_trap();

  Input in(data, size);
  uint8_t buf[8];
  while (!in.empty()) {
    const uint8_t op = in.byte();
    const bool write = op & 0x08;
    switch (op & 7) {
      case 0:
      case 1:
      case 2: {
        const uint64_t offset = in.u16() & 0x1fff;  // includes offsets past the 4 KiB page
        const size_t len = size_t{1} << (in.byte() & 3);
        const std::span<uint8_t> span(buf, len);
        if (write) {
          for (size_t i = 0; i < len; ++i) buf[i] = in.byte();
        }
        if ((op & 7) == 2) {
          if (write) {
            mmio.write(IoApic::kDefaultBase + offset, span);
          } else {
            mmio.read(IoApic::kDefaultBase + offset, span);
          }
        } else {
          LocalApic& lapic = platform.local_apic(op & 1);
          if (write) {
            lapic.mmio_write(offset, span);
          } else {
            lapic.mmio_read(offset, span);
          }
        }
        break;
      }
      case 3: {
        const uint8_t low = in.byte();
        const uint16_t port = (op & 0x10) ? static_cast<uint16_t>(0x4d0 + (low & 1)) : low;
        if (write) {
          buf[0] = in.byte();
          ports.write(port, std::span(buf, 1));
        } else {
          ports.read(port, std::span(buf, 1));
        }
        break;
      }
      case 4: {
        static constexpr uint32_t kMsrs[] = {LocalApic::kMsrApicBase, LocalApic::kMsrTscDeadline};
        const uint8_t sel = in.byte();
        const uint32_t msr = sel < 2 ? kMsrs[sel] : LocalApic::kMsrX2apicFirst + sel;
        LocalApic& lapic = platform.local_apic((op >> 4) & 1);
        if (write) {
          (void)lapic.msr_write(msr, in.u64());
        } else {
          (void)lapic.msr_read(msr);
        }
        break;
      }
      case 5:
        if (write) {
          const uint64_t address = 0xfee00000ull | (uint64_t{in.u16()} << 4);
          platform.interrupts().signal_msi((op & 0x10) ? in.u64() : address, static_cast<uint32_t>(in.u64()));
        } else {
          platform.interrupts().set_irq_line(in.byte(), op & 0x10);
        }
        break;
      case 6:
        clock.advance(uint64_t{in.u16()} << ((op >> 3) & 0x1f));
        platform.timers().run_due();
        break;
      case 7: {
        // What the CPU core does at an instruction boundary.
        LocalApic& lapic = platform.local_apic((op >> 3) & 1);
        switch ((op >> 4) & 7) {
          case 0: (void)lapic.take_interrupt(); break;
          case 1: (void)lapic.take_nmi(); break;
          case 2: (void)lapic.take_init(); break;
          case 3: (void)lapic.take_sipi(); break;
          case 4: lapic.set_cr8(in.byte()); break;
          case 5: lapic.set_tsc_offset(in.u64()); break;
          case 6: (void)platform.pic().acknowledge(); break;
          default: {
            auto s = platform.save();
            if (!platform.restore(s)) __builtin_trap();
            break;
          }
        }
        break;
      }
    }
  }
  return 0;
}
