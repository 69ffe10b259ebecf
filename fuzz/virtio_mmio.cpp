// The virtio-mmio transport (with virtio-rng behind it) under random guest
// register accesses; guest RAM holds the rest of the input, so queues the
// fuzzer sets up point at fuzzer-chosen rings.
//
// Input: [count], then `count` records of [write?][size][u16 offset][u32 value],
// then RAM contents. A turn the device rescheduled (a drain that stopped at
// its budget) runs after each access, as the event loop would run it.
#include <poll.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "devices/bus/bus.h"
#include "devices/virtio/mmio/virtio_mmio_device.h"
#include "devices/virtio/rng/virtio_rng.h"

using namespace hostvisor;

namespace {
class NullInterrupts : public InterruptController {
 public:
  void set_irq_line(uint32_t, bool) override {}
  void signal_msi(uint64_t, uint32_t) override {}
};
constexpr uint64_t kRamSize = 64 * 1024;
constexpr uint64_t kBase = 0xd0000000;
constexpr size_t kRecord = 8;
constexpr unsigned kSizes[] = {4, 4, 4, 1, 2, 8};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  NullInterrupts interrupts;
  Bus mmio("mmio");
  auto memory = GuestMemory::create({{GuestAddress(0), kRamSize}});
  if (!memory) __builtin_trap();
  auto rng = std::make_shared<VirtioRng>();
  auto device = VirtioMmioDevice::create(rng, *memory, IrqLine(&interrupts, 5));
  if (!device || !mmio.insert(*device, kBase, VirtioMmioDevice::kSize)) __builtin_trap();

  if (size == 0) return 0;
  const size_t records = std::min<size_t>(data[0], (size - 1) / kRecord);
  ++data;
  --size;
  const size_t ram_bytes = std::min<size_t>(size - records * kRecord, kRamSize);
  (void)memory->write(GuestAddress(0), std::span(data + records * kRecord, ram_bytes));
  for (size_t r = 0; r < records; ++r) {
    const uint8_t* rec = data + r * kRecord;
    uint16_t offset;
    uint32_t value;
    std::memcpy(&offset, rec + 2, 2);
    std::memcpy(&value, rec + 4, 4);
    uint8_t buf[8] = {};
    std::memcpy(buf, &value, 4);
    const std::span<uint8_t> bytes(buf, kSizes[rec[1] % 6]);
    const uint64_t address = kBase + offset % VirtioMmioDevice::kSize;
    if (rec[0] & 1) {
      mmio.write(address, bytes);
    } else {
      mmio.read(address, bytes);
    }
    pollfd rescheduled{rng->reschedule_fd(), POLLIN, 0};
    if (::poll(&rescheduled, 1, 0) == 1) rng->run_rescheduled();
  }
  return 0;
}
