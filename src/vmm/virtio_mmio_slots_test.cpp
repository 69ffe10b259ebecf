#include "vmm/virtio_mmio_slots.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "arch/x86_64/layout.h"
#include "devices/virtio/rng/virtio_rng.h"

namespace hostvisor {
namespace {

class RecordingInterrupts : public InterruptController {
 public:
  void set_irq_line(uint32_t gsi, bool level) override { lines.push_back({gsi, level}); }
  void signal_msi(uint64_t, uint32_t) override {}
  std::vector<std::pair<uint32_t, bool>> lines;
};

uint32_t read32(Bus& bus, uint64_t address) {
  uint8_t bytes[4] = {};
  EXPECT_TRUE(bus.read(address, bytes));
  uint32_t v;
  std::memcpy(&v, bytes, 4);
  return v;
}

TEST(VirtioMmioSlots, EachDeviceGetsTheNextWindowSlotAndGsiUntilTheyRunOut) {
  auto memory = GuestMemory::create({{GuestAddress(0), 1 << 20}});
  ASSERT_TRUE(memory.ok());
  Bus bus("MMIO");
  RecordingInterrupts interrupts;
  VirtioMmioSlots slots(bus, interrupts, *memory);

  for (uint32_t i = 0; i < arch::kVirtioMmioSlots; ++i) {
    auto added = slots.add(std::make_shared<VirtioRng>());
    ASSERT_TRUE(added.ok()) << added.error().message();
    const uint64_t base = arch::kVirtioMmioStart + i * arch::kVirtioMmioStride;
    // The guest finds a virtio-mmio v2 entropy device (ID 4) there.
    EXPECT_EQ(read32(bus, base + 0x000), VirtioMmioDevice::kMagic);
    EXPECT_EQ(read32(bus, base + 0x004), 2u);
    EXPECT_EQ(read32(bus, base + 0x008), 4u);
    ASSERT_EQ(slots.descriptions().size(), i + 1);
    EXPECT_EQ(slots.descriptions()[i].base, base);
    EXPECT_EQ(slots.descriptions()[i].size, VirtioMmioDevice::kSize);
    EXPECT_EQ(slots.descriptions()[i].gsi, arch::kVirtioMmioFirstGsi + i);
  }
  // Nothing answers between the register blocks.
  uint8_t byte;
  EXPECT_FALSE(bus.read(arch::kVirtioMmioStart + VirtioMmioDevice::kSize, std::span(&byte, 1)));

  auto extra = slots.add(std::make_shared<VirtioRng>());
  ASSERT_FALSE(extra.ok());
  EXPECT_EQ(extra.error().code(), ErrorCode::kOutOfRange);
  EXPECT_NE(extra.error().message().find("transport=pci"), std::string::npos) << extra.error().message();
  EXPECT_EQ(slots.descriptions().size(), arch::kVirtioMmioSlots);
  EXPECT_FALSE(slots.add(nullptr).ok());
}

}  // namespace
}  // namespace hostvisor
