#include "devices/pci/pci_root.h"

#include <gtest/gtest.h>

#include <vector>

#include "devices/bus/bus.h"
#include "devices/pci/pci_config_io.h"
#include "devices/pci/pci_ecam.h"
#include "devices/pci/pci_layout.h"
#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

using testing::RecordingInterruptController;

class TestDevice : public PciDevice {
 public:
  TestDevice() : config_(PciConfigSpace::Identity{.vendor_id = 0x1234, .device_id = 0x5678, .class_code = 0xff0000}) {
    EXPECT_TRUE(config_.add_bar(0, {PciBarKind::kMemory32, 0x1000, false}).ok());
    EXPECT_TRUE(config_.add_bar(2, {PciBarKind::kIo, 16, false}).ok());
    EXPECT_TRUE(config_.add_bar(3, {PciBarKind::kMemory64, 0x4000, false}).ok());
    config_.set_interrupt_pin(2);
  }
  std::string_view name() const override { return "test-device"; }
  void bar_read(int bar, uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(bar * 16 + offset + i);
  }
  void bar_write(int bar, uint64_t offset, std::span<const uint8_t> data) override { writes.push_back({bar, offset}); }
  void attached(const PciAttachment& a) override { attachment = a; }
  void bar_moved(int bar, std::optional<uint64_t> old_address, std::optional<uint64_t> new_address) override {
    moves.push_back({bar, old_address, new_address});
  }
  PciConfigSpace& config_space() override { return config_; }

  struct Move {
    int bar;
    std::optional<uint64_t> from, to;
  };
  PciConfigSpace config_;
  PciAttachment attachment;
  std::vector<Move> moves;
  std::vector<std::pair<int, uint64_t>> writes;
};

struct Platform {
  Platform() : mapper(mmio, pio), root(&irq, &mapper) {
    EXPECT_TRUE(pio.insert(std::make_shared<PciConfigIo>(root), pci::kConfigIoBase, pci::kConfigIoSize).ok());
    EXPECT_TRUE(mmio.insert(std::make_shared<PciEcam>(root), pci::kEcamBase, pci::kEcamSize).ok());
  }
  uint32_t cf8_read(uint8_t dev, uint16_t reg, unsigned size = 4) {
    const uint32_t address = 0x80000000u | dev << 11 | (reg & 0xfc);
    pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&address), 4));
    uint32_t v = 0;
    pio.read(0xcfc + (reg & 3), std::span(reinterpret_cast<uint8_t*>(&v), size));
    return v;
  }
  void cf8_write(uint8_t dev, uint16_t reg, uint32_t value, unsigned size = 4) {
    const uint32_t address = 0x80000000u | dev << 11 | (reg & 0xfc);
    pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&address), 4));
    pio.write(0xcfc + (reg & 3), std::span(reinterpret_cast<const uint8_t*>(&value), size));
  }
  uint64_t ecam(uint8_t bus, uint8_t dev, uint8_t fn, uint16_t reg) {
    return pci::kEcamBase + (uint64_t{bus} << 20 | uint64_t{dev} << 15 | uint64_t{fn} << 12 | reg);
  }
  uint32_t ecam_read(uint8_t dev, uint16_t reg, unsigned size = 4, uint8_t bus = 0, uint8_t fn = 0) {
    uint32_t v = 0;
    mmio.read(ecam(bus, dev, fn, reg), std::span(reinterpret_cast<uint8_t*>(&v), size));
    return v;
  }
  void ecam_write(uint8_t dev, uint16_t reg, uint32_t value, unsigned size = 4) {
    mmio.write(ecam(0, dev, 0, reg), std::span(reinterpret_cast<const uint8_t*>(&value), size));
  }

  Bus mmio{"mmio"};
  Bus pio{"pio", 0xffff};
  RecordingInterruptController irq;
  BusBarMapper mapper;
  PciRoot root;
};

TEST(PciRoot, HostBridgeAtZero) {
  Platform p;
  EXPECT_EQ(p.cf8_read(0, 0), 0x29c08086u);
  EXPECT_EQ(p.cf8_read(0, pci_reg::kRevision) >> 8, 0x060000u);
  EXPECT_EQ(p.ecam_read(0, 0), 0x29c08086u);
}

TEST(PciRoot, UnknownFunctionsReadAllOnes) {
  Platform p;
  EXPECT_EQ(p.cf8_read(5, 0), 0xffffffffu);
  EXPECT_EQ(p.cf8_read(5, 0, 2), 0xffffu);
  EXPECT_EQ(p.ecam_read(0, 0, 4, /*bus=*/1), 0xffffffffu);
  EXPECT_EQ(p.ecam_read(0, 0, 4, 0, /*fn=*/3), 0xffffffffu);
  EXPECT_EQ(p.ecam_read(31, 0x100), 0xffffffffu);
  p.ecam_write(7, pci_reg::kCommand, 0xffff);  // dropped, no crash
}

TEST(PciRoot, ConfigAddressRegister) {
  Platform p;
  uint32_t address = 0xffffffff;
  p.pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&address), 4));
  uint32_t back = 0;
  p.pio.read(0xcf8, std::span(reinterpret_cast<uint8_t*>(&back), 4));
  EXPECT_EQ(back, 0x80fffffcu);  // reserved bits read 0
  address = 0x00000000;          // enable clear: data port reads all-ones
  p.pio.write(0xcf8, std::span(reinterpret_cast<const uint8_t*>(&address), 4));
  uint32_t data = 0;
  p.pio.read(0xcfc, std::span(reinterpret_cast<uint8_t*>(&data), 4));
  EXPECT_EQ(data, 0xffffffffu);
}

TEST(PciRoot, Cf8AndEcamReachTheSameFunction) {
  Platform p;
  auto dev = std::make_shared<TestDevice>();
  auto address = p.root.add_device(dev, 3);
  ASSERT_TRUE(address.ok());
  EXPECT_EQ(address->device, 3);
  EXPECT_EQ(p.cf8_read(3, 0), 0x56781234u);
  EXPECT_EQ(p.ecam_read(3, 0), 0x56781234u);
  // Byte and word reads at 0xCFC + n.
  EXPECT_EQ(p.cf8_read(3, 2, 2), 0x5678u);
  EXPECT_EQ(p.cf8_read(3, 3, 1), 0x56u);
  // Written through one mechanism, seen through the other.
  p.cf8_write(3, pci_reg::kInterruptLine, 0x2b, 1);
  EXPECT_EQ(p.ecam_read(3, pci_reg::kInterruptLine, 1), 0x2bu);
  p.ecam_write(3, pci_reg::kCacheLineSize, 0x10, 1);
  EXPECT_EQ(p.cf8_read(3, pci_reg::kCacheLineSize, 1), 0x10u);
  // Extended config space is only reachable through ECAM.
  EXPECT_EQ(p.ecam_read(3, 0x100), 0u);
}

TEST(PciRoot, EcamSplitsWideAndMisalignedAccesses) {
  Platform p;
  auto dev = std::make_shared<TestDevice>();
  ASSERT_TRUE(p.root.add_device(dev, 1).ok());
  uint64_t v = 0;
  p.mmio.read(p.ecam(0, 1, 0, 0), std::span(reinterpret_cast<uint8_t*>(&v), 8));
  EXPECT_EQ(v & 0xffffffff, 0x56781234u);
  uint16_t w = 0;
  p.mmio.read(p.ecam(0, 1, 0, 1), std::span(reinterpret_cast<uint8_t*>(&w), 2));
  EXPECT_EQ(w, 0x7812u);
}

TEST(PciRoot, SlotsAndIntxRouting) {
  Platform p;
  auto a = std::make_shared<TestDevice>();
  auto b = std::make_shared<TestDevice>();
  ASSERT_TRUE(p.root.add_device(a).ok());
  ASSERT_TRUE(p.root.add_device(b).ok());
  EXPECT_EQ(a->attachment.address.device, 1);
  EXPECT_EQ(b->attachment.address.device, 2);
  // Pin INTB: slot 1 -> 16 + (1 + 1) % 4 = 18, slot 2 -> 19.
  EXPECT_EQ(a->attachment.intx_gsi, 18u);
  EXPECT_EQ(b->attachment.intx_gsi, 19u);
  EXPECT_EQ(p.cf8_read(1, pci_reg::kInterruptLine, 1), 18u);
  EXPECT_EQ(a->attachment.interrupts, &p.irq);
  EXPECT_EQ(PciRoot::intx_gsi(0, 1), 16u);
  EXPECT_EQ(PciRoot::intx_gsi(3, 4), 18u);
  EXPECT_FALSE(p.root.add_device(std::make_shared<TestDevice>(), 1).ok());   // taken
  EXPECT_FALSE(p.root.add_device(std::make_shared<TestDevice>(), 32).ok());  // no such slot
}

TEST(PciRoot, BarsAreAssignedAndMappedOnTheBuses) {
  Platform p;
  auto dev = std::make_shared<TestDevice>();
  ASSERT_TRUE(p.root.add_device(dev, 1).ok());
  const uint64_t bar0 = dev->config_.bar_address(0);
  const uint64_t bar2 = dev->config_.bar_address(2);
  const uint64_t bar3 = dev->config_.bar_address(3);
  EXPECT_EQ(bar0, pci::kMmioHoleStart);
  EXPECT_EQ(bar2, pci::kIoBarStart);
  EXPECT_EQ(bar3 % 0x4000, 0u);
  EXPECT_EQ(p.cf8_read(1, pci_reg::kCommand, 2) & 3, 3u);  // firmware enabled decoding
  uint8_t byte = 0;
  EXPECT_TRUE(p.mmio.read(bar0 + 5, std::span(&byte, 1)));
  EXPECT_EQ(byte, 5);
  EXPECT_TRUE(p.pio.read(bar2 + 1, std::span(&byte, 1)));
  EXPECT_EQ(byte, 2 * 16 + 1);
  EXPECT_TRUE(p.mmio.read(bar3 + 0x3fff, std::span(&byte, 1)));
  ASSERT_EQ(dev->moves.size(), 3u);
}

TEST(PciRoot, GuestMovesABarLikeLinuxDoes) {
  Platform p;
  auto dev = std::make_shared<TestDevice>();
  ASSERT_TRUE(p.root.add_device(dev, 1).ok());
  const uint64_t old = dev->config_.bar_address(0);
  dev->moves.clear();
  // Disable decoding, size, program a new address, re-enable.
  const uint32_t command = p.cf8_read(1, pci_reg::kCommand, 2);
  p.cf8_write(1, pci_reg::kCommand, command & ~3u, 2);
  uint8_t byte = 0;
  EXPECT_FALSE(p.mmio.read(old, std::span(&byte, 1)));
  p.cf8_write(1, pci_reg::kBar0, 0xffffffff);
  EXPECT_EQ(p.cf8_read(1, pci_reg::kBar0), 0xfffff000u);
  p.cf8_write(1, pci_reg::kBar0, 0xd8000000);
  p.cf8_write(1, pci_reg::kCommand, command, 2);
  EXPECT_TRUE(p.mmio.read(0xd8000000, std::span(&byte, 1)));
  EXPECT_FALSE(p.mmio.read(old, std::span(&byte, 1)));
  // BAR0 went off, then on at the new place; the others went off and back.
  bool saw_bar0_new = false;
  for (auto& m : dev->moves)
    if (m.bar == 0 && m.to == 0xd8000000u) saw_bar0_new = true;
  EXPECT_TRUE(saw_bar0_new);
}

TEST(PciRoot, OverlappingBarDoesNotDecodeUntilMoved) {
  Platform p;
  auto a = std::make_shared<TestDevice>();
  auto b = std::make_shared<TestDevice>();
  ASSERT_TRUE(p.root.add_device(a, 1).ok());
  ASSERT_TRUE(p.root.add_device(b, 2).ok());
  const uint64_t a_bar0 = a->config_.bar_address(0);
  p.cf8_write(2, pci_reg::kBar0, static_cast<uint32_t>(a_bar0));  // collides with a's BAR0
  uint8_t byte = 0;
  EXPECT_TRUE(p.mmio.read(a_bar0, std::span(&byte, 1)));
  p.mmio.write(a_bar0, std::span(&byte, 1));
  ASSERT_FALSE(a->writes.empty());
  EXPECT_TRUE(b->writes.empty());
  p.cf8_write(2, pci_reg::kBar0, 0xd9000000);
  p.mmio.write(0xd9000000, std::span(&byte, 1));
  EXPECT_FALSE(b->writes.empty());
}

class ResetRecorder : public SystemControl {
 public:
  void request_exit(int) override {}
  void request_reset() override { ++resets; }
  void request_poweroff() override {}
  int resets = 0;
};

TEST(PciConfigIo, ResetControlRegister) {
  Platform p;
  ResetRecorder system;
  Bus pio("pio", 0xffff);
  ASSERT_TRUE(pio.insert(std::make_shared<PciConfigIo>(p.root, &system), 0xcf8, 8).ok());
  uint8_t v = 0x02;
  pio.write(0xcf9, std::span(&v, 1));
  EXPECT_EQ(system.resets, 0);
  v = 0x06;
  pio.write(0xcf9, std::span(&v, 1));
  EXPECT_EQ(system.resets, 1);
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

TEST(PciRootState, RefreshMappingsAfterRestore) {
  Platform p;
  auto dev = std::make_shared<TestDevice>();
  ASSERT_TRUE(p.root.add_device(dev, 1).ok());
  PciConfigSpace::State state = dev->config_.save();
  // A fresh machine: same device model, restored registers, BAR0 moved.
  Platform q;
  auto restored = std::make_shared<TestDevice>();
  ASSERT_TRUE(q.root.add_device(restored, 1).ok());
  state.bytes[pci_reg::kBar0 + 3] = 0xd7;  // BAR0 at 0xd7000000
  state.bytes[pci_reg::kBar0 + 2] = 0;
  state.bytes[pci_reg::kBar0 + 1] = 0;
  ASSERT_TRUE(restored->config_.restore(state).ok());
  q.root.refresh_mappings();
  uint8_t byte = 0;
  EXPECT_TRUE(q.mmio.read(0xd7000000, std::span(&byte, 1)));
  EXPECT_FALSE(q.mmio.read(pci::kMmioHoleStart, std::span(&byte, 1)));
}

TEST(PciConfigIoState, RoundTrip) {
  Platform p;
  PciConfigIo io(p.root);
  const uint32_t address = 0x80000810;
  io.write(0, std::span(reinterpret_cast<const uint8_t*>(&address), 4));
  PciConfigIo other(p.root);
  other.restore(io.save());
  EXPECT_EQ(other.config_address(), 0x80000810u);
}

}  // namespace
}  // namespace hostvisor
