// Drives virtio-rng through the virtio-pci transport the way a guest driver
// does: config cycles through ECAM, register accesses through the BAR on
// the MMIO bus, rings in guest memory.
#include "devices/virtio/pci/virtio_pci_device.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "devices/bus/bus.h"
#include "devices/pci/pci_ecam.h"
#include "devices/pci/pci_layout.h"
#include "devices/pci/pci_root.h"
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
constexpr uint8_t kSlot = 4;

// Common cfg offsets.
constexpr uint64_t kDeviceFeatureSelect = 0x00, kDeviceFeature = 0x04, kDriverFeatureSelect = 0x08,
                   kDriverFeature = 0x0c, kConfigMsixVector = 0x10, kNumQueues = 0x12, kDeviceStatus = 0x14,
                   kConfigGeneration = 0x15, kQueueSelect = 0x16, kQueueSize = 0x18, kQueueMsixVector = 0x1a,
                   kQueueEnable = 0x1c, kQueueNotifyOff = 0x1e, kQueueDesc = 0x20, kQueueDriver = 0x28,
                   kQueueDevice = 0x30;

struct Cap {
  uint16_t at;
  uint8_t bar;
  uint32_t offset, length, multiplier;
};

class VirtioPciTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    mapper = std::make_unique<BusBarMapper>(mmio, pio);
    root = std::make_unique<PciRoot>(&irq, mapper.get());
    ASSERT_TRUE(mmio.insert(std::make_shared<PciEcam>(*root), pci::kEcamBase, pci::kEcamSize).ok());
    auto dev = VirtioPciDevice::create(std::make_shared<VirtioRng>(), memory);
    ASSERT_TRUE(dev.ok()) << dev.error().message();
    device = *dev;
    ASSERT_TRUE(root->add_device(device, kSlot).ok());
    find_capabilities();
  }

  // --- config space through ECAM
  uint64_t ecam(uint16_t reg) const { return pci::kEcamBase + (uint64_t{kSlot} << 15) + reg; }
  uint32_t cfg_read(uint16_t reg, unsigned size = 4) {
    uint32_t v = 0;
    mmio.read(ecam(reg), std::span(reinterpret_cast<uint8_t*>(&v), size));
    return v;
  }
  void cfg_write(uint16_t reg, uint32_t v, unsigned size = 4) {
    mmio.write(ecam(reg), std::span(reinterpret_cast<const uint8_t*>(&v), size));
  }

  void find_capabilities() {
    ASSERT_TRUE(cfg_read(pci_reg::kStatus, 2) & pci_status::kCapabilitiesList);
    uint16_t at = cfg_read(pci_reg::kCapabilitiesPointer, 1);
    for (int guard = 0; at && guard < 48; ++guard) {
      const uint8_t id = cfg_read(at, 1);
      if (id == pci_cap_id::kVendorSpecific) {
        const uint8_t type = cfg_read(at + 3, 1);
        Cap c{at, static_cast<uint8_t>(cfg_read(at + 4, 1)), cfg_read(at + 8), cfg_read(at + 12), 0};
        if (type == 2) c.multiplier = cfg_read(at + 16);
        caps[type] = c;
      } else if (id == pci_cap_id::kMsix) {
        msix_cap = at;
      }
      at = cfg_read(at + 1, 1);
    }
    bar = (cfg_read(pci_reg::kBar0) & ~0xfu) | uint64_t{cfg_read(pci_reg::kBar0 + 4)} << 32;
  }

  // --- BAR accesses on the MMIO bus
  template <typename T>
  T bar_read(uint64_t offset) {
    T v{};
    mmio.read(bar + offset, std::span(reinterpret_cast<uint8_t*>(&v), sizeof(T)));
    return v;
  }
  template <typename T>
  void bar_write(uint64_t offset, T v) {
    mmio.write(bar + offset, std::span(reinterpret_cast<const uint8_t*>(&v), sizeof(T)));
  }
  uint64_t common() const { return caps.at(1).offset; }
  uint8_t status() { return bar_read<uint8_t>(common() + kDeviceStatus); }
  void set_status(uint8_t s) { bar_write<uint8_t>(common() + kDeviceStatus, s); }
  uint64_t device_features() {
    bar_write<uint32_t>(common() + kDeviceFeatureSelect, 0);
    uint64_t f = bar_read<uint32_t>(common() + kDeviceFeature);
    bar_write<uint32_t>(common() + kDeviceFeatureSelect, 1);
    return f | uint64_t{bar_read<uint32_t>(common() + kDeviceFeature)} << 32;
  }
  void set_driver_features(uint64_t f) {
    bar_write<uint32_t>(common() + kDriverFeatureSelect, 0);
    bar_write<uint32_t>(common() + kDriverFeature, static_cast<uint32_t>(f));
    bar_write<uint32_t>(common() + kDriverFeatureSelect, 1);
    bar_write<uint32_t>(common() + kDriverFeature, static_cast<uint32_t>(f >> 32));
  }
  void notify(uint16_t queue) {
    bar_write<uint16_t>(caps.at(2).offset + caps.at(2).multiplier * queue_notify_off, queue);
  }

  // The Linux virtio_pci_modern probe + virtio core init sequence (3.1.1).
  void initialise(uint64_t features, uint16_t queue_vector = kNoVector) {
    set_status(0);
    ASSERT_EQ(status(), 0);
    set_status(kStatusAcknowledge);
    set_status(kStatusAcknowledge | kStatusDriver);
    set_driver_features(features);
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    ASSERT_TRUE(status() & kStatusFeaturesOk);
    ASSERT_EQ(bar_read<uint16_t>(common() + kNumQueues), 1);
    bar_write<uint16_t>(common() + kQueueSelect, 0);
    ASSERT_EQ(bar_read<uint16_t>(common() + kQueueSize), VirtioRng::kQueueSize);
    bar_write<uint16_t>(common() + kQueueSize, 16);
    driver = std::make_unique<VirtqueueTestDriver>(memory, 16, 0x10000);
    // 64-bit addresses written as two dwords, as Linux does.
    auto write64 = [&](uint64_t off, uint64_t v) {
      bar_write<uint32_t>(common() + off, static_cast<uint32_t>(v));
      bar_write<uint32_t>(common() + off + 4, static_cast<uint32_t>(v >> 32));
    };
    write64(kQueueDesc, driver->layout().desc_table.value());
    write64(kQueueDriver, driver->layout().avail_ring.value());
    write64(kQueueDevice, driver->layout().used_ring.value());
    bar_write<uint16_t>(common() + kQueueMsixVector, queue_vector);
    queue_notify_off = bar_read<uint16_t>(common() + kQueueNotifyOff);
    bar_write<uint16_t>(common() + kQueueEnable, 1);
    ASSERT_EQ(bar_read<uint16_t>(common() + kQueueEnable), 1);
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_EQ(status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  void enable_msix(uint16_t vector, uint32_t data) {
    cfg_write(msix_cap + 2, 0x8000, 2);
    const uint64_t entry = VirtioPciDevice::kMsixTableOffset + 16ull * vector;
    bar_write<uint32_t>(entry, 0xfee00000);
    bar_write<uint32_t>(entry + 4, 0);
    bar_write<uint32_t>(entry + 8, data);
    bar_write<uint32_t>(entry + 12, 0);  // unmask
  }

  Bus mmio{"mmio"};
  Bus pio{"pio", 0xffff};
  RecordingInterruptController irq;
  GuestMemory memory;
  std::unique_ptr<BusBarMapper> mapper;
  std::unique_ptr<PciRoot> root;
  std::shared_ptr<VirtioPciDevice> device;
  std::map<uint8_t, Cap> caps;
  uint16_t msix_cap = 0;
  uint64_t bar = 0;
  uint16_t queue_notify_off = 0;
  std::unique_ptr<VirtqueueTestDriver> driver;
};

TEST_F(VirtioPciTest, IdentifiesAsModernVirtioRng) {
  EXPECT_EQ(cfg_read(0), 0x10441af4u);  // 1af4:1040 + 4
  EXPECT_EQ(cfg_read(pci_reg::kRevision, 1), 1u);
  EXPECT_GE(cfg_read(pci_reg::kSubsystemId, 2), 0x40u);
  EXPECT_EQ(cfg_read(pci_reg::kInterruptPin, 1), 1u);
  EXPECT_EQ(cfg_read(pci_reg::kBar0) & 0x6, 0x4u);  // 64-bit memory BAR
  EXPECT_GE(bar, pci::kMmioHoleStart);
}

TEST_F(VirtioPciTest, CapabilitiesDescribeTheBar) {
  ASSERT_TRUE(caps.count(1) && caps.count(2) && caps.count(3) && caps.count(5));
  EXPECT_EQ(caps.count(4), 0u);  // virtio-rng has no device config
  for (uint8_t type : {1, 2, 3}) {
    EXPECT_EQ(caps[type].bar, 0);
    EXPECT_LE(uint64_t{caps[type].offset} + caps[type].length, VirtioPciDevice::kBarSize);
  }
  EXPECT_GE(caps[1].length, 0x38u);
  EXPECT_EQ(caps[2].multiplier, 4u);
  EXPECT_EQ(caps[3].length, 1u);
  EXPECT_NE(msix_cap, 0);
  EXPECT_EQ(cfg_read(msix_cap + 2, 2) & 0x7ff, 1u);  // 2 vectors: config + one queue
}

TEST_F(VirtioPciTest, FeatureNegotiation) {
  const uint64_t offered = device_features();
  EXPECT_TRUE(offered & feature_bit(kFeatureVersion1));
  EXPECT_TRUE(offered & feature_bit(kFeatureEventIdx));
  EXPECT_FALSE(offered & feature_bit(kFeatureRingPacked));
  bar_write<uint32_t>(common() + kDeviceFeatureSelect, 7);
  EXPECT_EQ(bar_read<uint32_t>(common() + kDeviceFeature), 0u);

  // Without VERSION_1, FEATURES_OK does not stick.
  set_status(kStatusAcknowledge | kStatusDriver);
  set_driver_features(0);
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_FALSE(status() & kStatusFeaturesOk);
  // Nor with a feature the device did not offer.
  set_status(0);
  set_status(kStatusAcknowledge | kStatusDriver);
  set_driver_features(feature_bit(kFeatureVersion1) | feature_bit(kFeatureRingPacked));
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_FALSE(status() & kStatusFeaturesOk);
  // A subset with VERSION_1 does, and then the driver features are frozen.
  set_status(0);
  set_status(kStatusAcknowledge | kStatusDriver);
  set_driver_features(feature_bit(kFeatureVersion1));
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_TRUE(status() & kStatusFeaturesOk);
  bar_write<uint32_t>(common() + kDriverFeatureSelect, 0);
  bar_write<uint32_t>(common() + kDriverFeature, 0xffffffff);
  EXPECT_EQ(bar_read<uint32_t>(common() + kDriverFeature), 0u);
}

TEST_F(VirtioPciTest, FullInitialisationAndARequestOverIntx) {
  initialise(feature_bit(kFeatureVersion1));
  const uint64_t buffer = 0x40000;
  driver->add_chain(0, {{buffer, 64, true}});
  notify(0);
  EXPECT_EQ(driver->used_idx(), 1);
  EXPECT_EQ(driver->used(0).id, 0u);
  EXPECT_EQ(driver->used(0).len, 64u);
  std::array<uint8_t, 64> bytes{};
  ASSERT_TRUE(memory.read(GuestAddress(buffer), bytes).ok());
  int zeros = 0;
  for (uint8_t b : bytes) zeros += b == 0;
  EXPECT_LT(zeros, 16) << "64 random bytes are almost never mostly zero";

  // INTx: slot 4, INTA -> GSI 16 + (4 + 0) % 4 = 16; ISR bit 0; status bit 3.
  EXPECT_TRUE(irq.level(16));
  EXPECT_TRUE(cfg_read(pci_reg::kStatus, 2) & pci_status::kInterruptStatus);
  EXPECT_EQ(bar_read<uint8_t>(caps[3].offset), 1);
  EXPECT_FALSE(irq.level(16));  // reading the ISR acknowledged it
  EXPECT_EQ(bar_read<uint8_t>(caps[3].offset), 0);
  EXPECT_FALSE(cfg_read(pci_reg::kStatus, 2) & pci_status::kInterruptStatus);
}

TEST_F(VirtioPciTest, InterruptDisableHoldsTheIntxLine) {
  initialise(feature_bit(kFeatureVersion1));
  cfg_write(pci_reg::kCommand, cfg_read(pci_reg::kCommand, 2) | pci_command::kInterruptDisable, 2);
  driver->add_chain(0, {{0x40000, 8, true}});
  notify(0);
  EXPECT_FALSE(irq.level(16));
  EXPECT_TRUE(cfg_read(pci_reg::kStatus, 2) & pci_status::kInterruptStatus);  // still pending
  cfg_write(pci_reg::kCommand, cfg_read(pci_reg::kCommand, 2) & ~pci_command::kInterruptDisable, 2);
  EXPECT_TRUE(irq.level(16));
}

TEST_F(VirtioPciTest, EnablingMsixDropsThePendingIntx) {
  initialise(feature_bit(kFeatureVersion1));
  driver->add_chain(0, {{0x40000, 8, true}});
  notify(0);
  ASSERT_TRUE(irq.level(16));
  cfg_write(msix_cap + 2, 0x8000, 2);
  EXPECT_FALSE(irq.level(16));
}

TEST_F(VirtioPciTest, MsixQueueVectorWithEventIdx) {
  enable_msix(1, 0x4051);
  initialise(feature_bit(kFeatureVersion1) | feature_bit(kFeatureEventIdx), /*queue_vector=*/1);
  EXPECT_EQ(bar_read<uint16_t>(common() + kQueueMsixVector), 1);
  driver->set_used_event(0);
  driver->add_chain(0, {{0x40000, 32, true}});
  notify(0);
  ASSERT_EQ(irq.msis().size(), 1u);
  EXPECT_EQ(irq.msis()[0], (RecordingInterruptController::Msi{0xfee00000, 0x4051}));
  EXPECT_FALSE(irq.level(16));
  EXPECT_EQ(driver->avail_event(), 1);
  // The driver asks not to be interrupted until entry 5 is used.
  driver->set_used_event(5);
  driver->add_chain(1, {{0x40000, 32, true}});
  notify(0);
  EXPECT_EQ(driver->used_idx(), 2);
  EXPECT_EQ(irq.msis().size(), 1u);
}

TEST_F(VirtioPciTest, UnknownMsixVectorReadsNoVector) {
  bar_write<uint16_t>(common() + kConfigMsixVector, 9);
  EXPECT_EQ(bar_read<uint16_t>(common() + kConfigMsixVector), kNoVector);
  bar_write<uint16_t>(common() + kConfigMsixVector, 0);
  EXPECT_EQ(bar_read<uint16_t>(common() + kConfigMsixVector), 0);
}

TEST_F(VirtioPciTest, HostileChainMarksNeedsResetAndRaisesConfigInterrupt) {
  enable_msix(0, 0x4060);
  initialise(feature_bit(kFeatureVersion1), /*queue_vector=*/1);
  bar_write<uint16_t>(common() + kConfigMsixVector, 0);                   // reset cleared it; the config vector is 0
  driver->write_desc(0, 0x40000, 16, kDescFlagNext | kDescFlagWrite, 0);  // loops on itself
  driver->publish(0);
  notify(0);
  EXPECT_TRUE(status() & kStatusDeviceNeedsReset);
  ASSERT_EQ(irq.msis().size(), 1u);
  EXPECT_EQ(irq.msis()[0].data, 0x4060u);
  // Nothing is processed until the driver resets the device.
  driver->add_chain(1, {{0x40000, 16, true}});
  notify(0);
  EXPECT_EQ(driver->used_idx(), 0);
  set_status(0);
  EXPECT_EQ(status(), 0);
  initialise(feature_bit(kFeatureVersion1));
  driver->add_chain(0, {{0x40000, 16, true}});
  notify(0);
  EXPECT_EQ(driver->used_idx(), 1);
}

TEST_F(VirtioPciTest, NeedsResetOverIntxSetsIsrConfigBit) {
  initialise(feature_bit(kFeatureVersion1));
  driver->add_chain(0, {{kRam - 4, 16, true}});  // runs off the end of RAM
  notify(0);
  EXPECT_TRUE(status() & kStatusDeviceNeedsReset);
  EXPECT_EQ(bar_read<uint8_t>(caps[3].offset), 2);
}

TEST_F(VirtioPciTest, QueueOutsideRamFailsAtEnable) {
  set_status(kStatusAcknowledge | kStatusDriver);
  set_driver_features(feature_bit(kFeatureVersion1));
  set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  bar_write<uint16_t>(common() + kQueueSelect, 0);
  bar_write<uint16_t>(common() + kQueueSize, 16);
  bar_write<uint64_t>(common() + kQueueDesc, 0xfffffffff000ull);
  bar_write<uint16_t>(common() + kQueueEnable, 1);
  EXPECT_EQ(bar_read<uint16_t>(common() + kQueueEnable), 0);
  EXPECT_TRUE(status() & kStatusDeviceNeedsReset);
}

TEST_F(VirtioPciTest, QueueRegistersOfAMissingQueue) {
  bar_write<uint16_t>(common() + kQueueSelect, 3);
  EXPECT_EQ(bar_read<uint16_t>(common() + kQueueSize), 0);
  bar_write<uint16_t>(common() + kQueueSize, 16);
  bar_write<uint16_t>(common() + kQueueEnable, 1);
  EXPECT_EQ(bar_read<uint16_t>(common() + kQueueEnable), 0);
  notify(3);  // outside the notify region: ignored
}

TEST_F(VirtioPciTest, PciCfgCapabilityWindowReachesTheBar) {
  const uint16_t cap = caps[5].at;
  cfg_write(cap + 4, 0, 1);                                          // bar 0
  cfg_write(cap + 8, static_cast<uint32_t>(common() + kNumQueues));  // offset
  cfg_write(cap + 12, 2);                                            // length
  EXPECT_EQ(cfg_read(cap + 16, 2), 1u);                              // num_queues
  cfg_write(cap + 8, static_cast<uint32_t>(common() + kDeviceStatus));
  cfg_write(cap + 12, 1);
  cfg_write(cap + 16, kStatusAcknowledge, 1);
  EXPECT_EQ(status(), kStatusAcknowledge);
}

TEST_F(VirtioPciTest, NotifyAddressFollowsTheBar) {
  auto a = device->notify_address(0);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(*a, bar + caps[2].offset);
  EXPECT_FALSE(device->notify_address(1).has_value());
  cfg_write(pci_reg::kCommand, 0, 2);  // decoding off
  EXPECT_FALSE(device->notify_address(0).has_value());
}

TEST_F(VirtioPciTest, ConfigGenerationAndUnknownOffsets) {
  EXPECT_EQ(bar_read<uint8_t>(common() + kConfigGeneration), 0);
  EXPECT_EQ(bar_read<uint32_t>(0x7000), 0u);  // unused BAR space reads 0
  bar_write<uint32_t>(0x7000, 0xffffffff);    // and ignores writes
  EXPECT_EQ(bar_read<uint64_t>(common() + kQueueDesc), 0u);
}

TEST_F(VirtioPciTest, SnapshotRestoresARunningDevice) {
  enable_msix(1, 0x4071);
  initialise(feature_bit(kFeatureVersion1), /*queue_vector=*/1);
  driver->add_chain(0, {{0x40000, 16, true}});
  notify(0);
  ASSERT_EQ(driver->used_idx(), 1);
  const VirtioPciDevice::State state = testing::through_state_bytes<VirtioPciDevice>(device->save());

  // A second machine over the same RAM: plug, restore, remap.
  Bus mmio2("mmio");
  Bus pio2("pio", 0xffff);
  RecordingInterruptController irq2;
  BusBarMapper mapper2(mmio2, pio2);
  PciRoot root2(&irq2, &mapper2);
  auto restored = std::move(VirtioPciDevice::create(std::make_shared<VirtioRng>(), memory)).value();
  ASSERT_TRUE(root2.add_device(restored, kSlot).ok());
  ASSERT_TRUE(restored->restore(state).ok());
  root2.refresh_mappings();
  EXPECT_EQ(restored->device_status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);

  driver->add_chain(1, {{0x40100, 16, true}});
  const uint16_t value = 0;
  mmio2.write(bar + caps[2].offset, std::span(reinterpret_cast<const uint8_t*>(&value), 2));
  EXPECT_EQ(driver->used_idx(), 2);
  EXPECT_EQ(driver->used(1).id, 1u);
  ASSERT_EQ(irq2.msis().size(), 1u);  // MSI-X enable and the table came back too
  EXPECT_EQ(irq2.msis()[0].data, 0x4071u);
}

TEST_F(VirtioPciTest, SnapshotWithRingsOutsideRamIsRejected) {
  initialise(feature_bit(kFeatureVersion1));
  VirtioPciDevice::State state = device->save();
  state.core.queues[0].config.desc = kRam;  // hostile or corrupt snapshot file
  auto restored = std::move(VirtioPciDevice::create(std::make_shared<VirtioRng>(), memory)).value();
  auto r = restored->restore(state);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(restored->device_status(), 0);
}

// vCPUs poke the device concurrently: one keeps notifying while another
// resets and re-initialises the device, toggles MSI-X and INTx and reads the
// ISR. Nothing may deadlock or crash (run under TSan to check the locking).
TEST_F(VirtioPciTest, ConcurrentAccessesFromSeveralVcpus) {
  initialise(feature_bit(kFeatureVersion1));
  std::atomic<bool> stop{false};
  std::thread notifier([&] {
    while (!stop) {
      device->notify_queue(0);
      (void)device->notify_address(0);
    }
  });
  std::thread config([&] {
    for (int i = 0; !stop; ++i) {
      uint32_t v = 0;
      mmio.read(ecam(pci_reg::kCommand), std::span(reinterpret_cast<uint8_t*>(&v), 4));
      mmio.read(bar + caps.at(3).offset, std::span(reinterpret_cast<uint8_t*>(&v), 1));
      const uint16_t control = (i & 1) ? 0x8000 : 0;
      mmio.write(ecam(msix_cap + 2), std::span(reinterpret_cast<const uint8_t*>(&control), 2));
    }
  });
  for (int round = 0; round < 200; ++round) {
    initialise(feature_bit(kFeatureVersion1));
    bar_write<uint32_t>(VirtioPciDevice::kMsixTableOffset + 8, static_cast<uint32_t>(round));
  }
  stop = true;
  notifier.join();
  config.join();
  EXPECT_TRUE(status() & kStatusDriverOk);
}

TEST(VirtioPciCreate, RejectsImpossibleDevices) {
  auto memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
  EXPECT_FALSE(VirtioPciDevice::create(nullptr, memory).ok());
}

}  // namespace
}  // namespace hostvisor
