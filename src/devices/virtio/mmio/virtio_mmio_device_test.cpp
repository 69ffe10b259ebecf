// virtio-rng over the virtio-mmio (version 2) transport, driven like Linux's
// virtio_mmio driver: 32-bit register accesses on the MMIO bus.
#include "devices/virtio/mmio/virtio_mmio_device.h"

#include <gtest/gtest.h>

#include "devices/bus/bus.h"
#include "devices/testing/state_bytes.h"
#include "devices/virtio/rng/virtio_rng.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"
#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

using testing::RecordingInterruptController;
using testing::VirtqueueTestDriver;

using namespace virtio;
constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kBase = 0xd0000000;
constexpr uint32_t kGsi = 5;

class VirtioMmioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    auto dev = VirtioMmioDevice::create(std::make_shared<VirtioRng>(), memory, IrqLine(&irq, kGsi));
    ASSERT_TRUE(dev.ok()) << dev.error().message();
    device = *dev;
    ASSERT_TRUE(mmio.insert(device, kBase, VirtioMmioDevice::kSize).ok());
  }
  uint32_t reg(uint64_t offset) {
    uint32_t v = 0;
    mmio.read(kBase + offset, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void set(uint64_t offset, uint32_t v) {
    mmio.write(kBase + offset, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
  }

  void initialise(uint64_t features) {
    set(0x070, 0);
    set(0x070, kStatusAcknowledge);
    set(0x070, kStatusAcknowledge | kStatusDriver);
    set(0x024, 0);
    set(0x020, static_cast<uint32_t>(features));
    set(0x024, 1);
    set(0x020, static_cast<uint32_t>(features >> 32));
    set(0x070, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    ASSERT_TRUE(reg(0x070) & kStatusFeaturesOk);
    set(0x030, 0);
    ASSERT_EQ(reg(0x044), 0u);
    ASSERT_EQ(reg(0x034), VirtioRng::kQueueSize);
    set(0x038, 8);
    driver = std::make_unique<VirtqueueTestDriver>(memory, 8, 0x10000);
    set(0x080, static_cast<uint32_t>(driver->layout().desc_table.value()));
    set(0x084, 0);
    set(0x090, static_cast<uint32_t>(driver->layout().avail_ring.value()));
    set(0x094, 0);
    set(0x0a0, static_cast<uint32_t>(driver->layout().used_ring.value()));
    set(0x0a4, 0);
    set(0x044, 1);
    ASSERT_EQ(reg(0x044), 1u);
    set(0x070, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_EQ(reg(0x070), uint32_t{kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk});
  }

  Bus mmio{"mmio"};
  RecordingInterruptController irq;
  GuestMemory memory;
  std::shared_ptr<VirtioMmioDevice> device;
  std::unique_ptr<VirtqueueTestDriver> driver;
};

TEST_F(VirtioMmioTest, Identification) {
  EXPECT_EQ(reg(0x000), 0x74726976u);
  EXPECT_EQ(reg(0x004), 2u);
  EXPECT_EQ(reg(0x008), kDeviceEntropy);
  set(0x014, 1);
  EXPECT_TRUE(reg(0x010) & 1);         // VERSION_1 is bit 32
  EXPECT_EQ(reg(0x0b0), 0xffffffffu);  // no shared memory
  uint16_t narrow = 0;
  mmio.read(kBase, std::span(reinterpret_cast<uint8_t*>(&narrow), 2));
  EXPECT_EQ(narrow, 0);  // registers are 32-bit only
}

TEST_F(VirtioMmioTest, RequestRaisesTheLevelInterruptUntilAcked) {
  initialise(feature_bit(kFeatureVersion1));
  driver->add_chain(0, {{0x40000, 32, true}});
  set(0x050, 0);
  EXPECT_EQ(driver->used_idx(), 1);
  EXPECT_EQ(driver->used(0).len, 32u);
  EXPECT_NE(memory.read_obj<uint64_t>(GuestAddress(0x40000)).value(), 0u);
  EXPECT_TRUE(irq.level(kGsi));
  EXPECT_EQ(reg(0x060), 1u);
  set(0x064, 1);
  EXPECT_EQ(reg(0x060), 0u);
  EXPECT_FALSE(irq.level(kGsi));
}

TEST_F(VirtioMmioTest, HostileChainNeedsReset) {
  initialise(feature_bit(kFeatureVersion1));
  driver->add_chain(0, {{0x40000, 32, true}, {0x40100, 8, false}});  // readable after writable
  set(0x050, 0);
  EXPECT_TRUE(reg(0x070) & kStatusDeviceNeedsReset);
  EXPECT_EQ(reg(0x060), 2u);
  EXPECT_TRUE(irq.level(kGsi));
  set(0x070, 0);
  EXPECT_EQ(reg(0x070), 0u);
  EXPECT_FALSE(irq.level(kGsi));
  initialise(feature_bit(kFeatureVersion1));
  driver->add_chain(0, {{0x40000, 32, true}});
  set(0x050, 0);
  EXPECT_EQ(driver->used_idx(), 1);
}

TEST_F(VirtioMmioTest, QueueRegistersFrozenOnceReady) {
  initialise(feature_bit(kFeatureVersion1));
  set(0x038, 4);
  set(0x080, 0x1234);
  set(0x050, 7);  // a queue that does not exist
  driver->add_chain(0, {{0x40000, 16, true}});
  set(0x050, 0);
  EXPECT_EQ(driver->used_idx(), 1);  // still the original layout
}

TEST_F(VirtioMmioTest, SnapshotRoundTrip) {
  initialise(feature_bit(kFeatureVersion1));
  driver->add_chain(0, {{0x40000, 16, true}});
  set(0x050, 0);
  const VirtioMmioDevice::State state = testing::through_state_bytes<VirtioMmioDevice>(device->save());
  RecordingInterruptController irq2;
  auto restored =
      std::move(VirtioMmioDevice::create(std::make_shared<VirtioRng>(), memory, IrqLine(&irq2, kGsi))).value();
  ASSERT_TRUE(restored->restore(state).ok());
  EXPECT_TRUE(irq2.level(kGsi));  // the unacknowledged interrupt is still pending
  driver->add_chain(1, {{0x40100, 16, true}});
  restored->notify_queue(0);
  EXPECT_EQ(driver->used_idx(), 2);
}

// The transport tells the memory where the rings lie (for the balloon, which
// must not give them away): once a queue is enabled, until a reset, and again
// after a restore; a destroyed transport withdraws them.
TEST_F(VirtioMmioTest, EnabledRingsArePublishedInTheMemorysDeviceAreas) {
  EXPECT_TRUE(memory.device_areas().overlapping(0, kRam).empty());
  initialise(feature_bit(kFeatureVersion1));
  const auto rings = virtqueue_ring_areas(driver->layout());
  EXPECT_EQ(memory.device_areas().overlapping(0, kRam), rings);
  const VirtioMmioDevice::State state = device->save();
  set(0x070, 0);
  EXPECT_TRUE(memory.device_areas().overlapping(0, kRam).empty()) << "a reset device has no rings";
  {
    auto restored =
        std::move(VirtioMmioDevice::create(std::make_shared<VirtioRng>(), memory, IrqLine(&irq, kGsi))).value();
    ASSERT_TRUE(restored->restore(state).ok());
    EXPECT_EQ(memory.device_areas().overlapping(0, kRam), rings);
  }
  EXPECT_TRUE(memory.device_areas().overlapping(0, kRam).empty());
}

}  // namespace
}  // namespace hostvisor
