// The PCI root complex and a virtio-pci device under random guest accesses:
// CONFIG_ADDRESS/CONFIG_DATA port cycles, ECAM cycles, and MMIO/port
// accesses anywhere BARs may be mapped (so BAR moves, MSI-X, the virtio
// common config, notifications and queue processing all get exercised).
// Guest RAM holds the rest of the input, so rings the fuzzer sets up have
// fuzzer-chosen contents.
//
// Input: [count], then `count` records of [op][size][u32 address][u32 value],
// then RAM contents.
#include <cstdint>
#include <cstring>
#include <memory>

#include "devices/bus/bus.h"
#include "devices/pci/pci_config_io.h"
#include "devices/pci/pci_ecam.h"
#include "devices/pci/pci_layout.h"
#include "devices/pci/pci_root.h"
#include "devices/virtio/pci/virtio_pci_device.h"
#include "devices/virtio/rng/virtio_rng.h"

using namespace hostvisor;

namespace {

class NullInterrupts : public InterruptController {
 public:
  void set_irq_line(uint32_t, bool) override {}
  void signal_msi(uint64_t, uint32_t) override {}
};

constexpr uint64_t kRamSize = 64 * 1024;
constexpr size_t kRecord = 10;
constexpr unsigned kSizes[] = {1, 2, 4, 8, 3};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  NullInterrupts interrupts;
  Bus mmio("mmio");
  Bus pio("pio", 0xffff);
  auto memory = GuestMemory::create({{GuestAddress(0), kRamSize}});
  if (!memory) __builtin_trap();
  BusBarMapper mapper(mmio, pio);
  PciRoot root(&interrupts, &mapper);
  if (!pio.insert(std::make_shared<PciConfigIo>(root), pci::kConfigIoBase, pci::kConfigIoSize)) __builtin_trap();
  if (!mmio.insert(std::make_shared<PciEcam>(root), pci::kEcamBase, pci::kEcamSize)) __builtin_trap();
  auto rng = VirtioPciDevice::create(std::make_shared<VirtioRng>(), *memory);
  if (!rng || !root.add_device(*rng, 1)) __builtin_trap();

  if (size == 0) return 0;
  const size_t records = std::min<size_t>(data[0], (size - 1) / kRecord);
  ++data;
  --size;
  const uint8_t* ram = data + records * kRecord;
  const size_t ram_bytes = std::min<size_t>(size - records * kRecord, kRamSize);
  (void)memory->write(GuestAddress(0), std::span(ram, ram_bytes));

  for (size_t r = 0; r < records; ++r) {
    const uint8_t* rec = data + r * kRecord;
    const uint8_t op = rec[0];
    const unsigned width = kSizes[rec[1] % 5];
    uint32_t address, value;
    std::memcpy(&address, rec + 2, 4);
    std::memcpy(&value, rec + 6, 4);
    uint8_t buf[8] = {};
    std::memcpy(buf, &value, 4);
    std::memcpy(buf + 4, &value, 4);
    const std::span<uint8_t> bytes(buf, width);
    const bool write = op & 1;
    uint64_t target;
    Bus* bus = &mmio;
    switch ((op >> 1) % 4) {
      case 0:  // 0xCF8-0xCFF
        bus = &pio;
        target = pci::kConfigIoBase + (address % pci::kConfigIoSize);
        break;
      case 1:  // ECAM, mostly bus 0
        target = pci::kEcamBase + (address % (op & 0x80 ? pci::kEcamSize : 0x100000));
        break;
      case 2:  // where BARs get mapped
        target = pci::kMmioHoleStart + (address % 0x100000);
        break;
      default:  // any port
        bus = &pio;
        target = address & 0xffff;
        break;
    }
    if (write) {
      bus->write(target, bytes);
    } else {
      bus->read(target, bytes);
    }
  }
  return 0;
}
