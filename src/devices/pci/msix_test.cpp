#include "devices/pci/msix.h"

#include <gtest/gtest.h>

#include "devices/pci/test_interrupt_controller.h"

namespace hostvisor {
namespace {

struct MsixFixture : ::testing::Test {
  MsixFixture() : config(PciConfigSpace::Identity{.vendor_id = 0x1af4, .device_id = 0x1044}), msix(4, 1, 0x800, 0xc00) {
    EXPECT_TRUE(config.add_bar(1, {PciBarKind::kMemory32, 0x1000, false}).ok());
    EXPECT_TRUE(msix.install(config).ok());
    msix.set_interrupt_controller(&irq);
    cap = config.read(pci_reg::kCapabilitiesPointer, 1);
  }
  void write_entry(uint16_t v, uint64_t address, uint32_t data, bool masked) {
    const uint32_t words[4] = {static_cast<uint32_t>(address), static_cast<uint32_t>(address >> 32), data,
                               masked ? 1u : 0u};
    for (int i = 0; i < 4; ++i)
      msix.table_write(0x800 + v * 16 + i * 4, std::span(reinterpret_cast<const uint8_t*>(&words[i]), 4));
  }
  void set_control(uint16_t value) {
    config.write(cap + 2, 2, value);
    msix.config_written(config);
  }
  uint64_t pba() {
    uint64_t v = 0;
    msix.pba_read(0xc00, std::span(reinterpret_cast<uint8_t*>(&v), 8));
    return v;
  }

  RecordingInterruptController irq;
  PciConfigSpace config;
  Msix msix;
  uint16_t cap = 0;
};

TEST_F(MsixFixture, CapabilityDescribesTableAndPba) {
  EXPECT_EQ(config.read(cap, 1), 0x11u);
  EXPECT_EQ(config.read(cap + 2, 2), 3u);  // table size N-1
  EXPECT_EQ(config.read(cap + 4, 4), 0x801u);
  EXPECT_EQ(config.read(cap + 8, 4), 0xc01u);
  config.write(cap + 2, 2, 0xffff);
  EXPECT_EQ(config.read(cap + 2, 2), 0xc003u);  // only Enable and Function Mask are writable
  config.write(cap + 4, 4, 0);
  EXPECT_EQ(config.read(cap + 4, 4), 0x801u);
}

TEST_F(MsixFixture, VectorsStartMaskedAndTableReadsBack) {
  for (uint16_t v = 0; v < 4; ++v) EXPECT_TRUE(msix.vector_masked(v));
  write_entry(2, 0xfee01000, 0x4041, false);
  uint32_t words[4];
  msix.table_read(0x800 + 32, std::span(reinterpret_cast<uint8_t*>(words), 16));
  EXPECT_EQ(words[0], 0xfee01000u);
  EXPECT_EQ(words[1], 0u);
  EXPECT_EQ(words[2], 0x4041u);
  EXPECT_EQ(words[3], 0u);
  uint64_t q = 0;
  msix.table_read(0x800 + 32, std::span(reinterpret_cast<uint8_t*>(&q), 8));  // 64-bit access
  EXPECT_EQ(q, 0xfee01000u);
  const uint32_t reserved = 0xfffffffe;  // reserved control bits stay zero
  msix.table_write(0x800 + 32 + 12, std::span(reinterpret_cast<const uint8_t*>(&reserved), 4));
  msix.table_read(0x800 + 32 + 12, std::span(reinterpret_cast<uint8_t*>(words), 4));
  EXPECT_EQ(words[0], 0u);
}

TEST_F(MsixFixture, DisabledDoesNotDeliver) {
  write_entry(0, 0xfee00000, 0x30, false);
  EXPECT_FALSE(msix.signal(0));
  EXPECT_TRUE(irq.msis.empty());
}

TEST_F(MsixFixture, UnmaskedVectorDelivers) {
  write_entry(1, 0xfee00000, 0x31, false);
  set_control(0x8000);
  EXPECT_TRUE(msix.signal(1));
  ASSERT_EQ(irq.msis.size(), 1u);
  EXPECT_EQ(irq.msis[0], (RecordingInterruptController::Msi{0xfee00000, 0x31}));
  EXPECT_FALSE(msix.signal(4));  // no such vector
}

TEST_F(MsixFixture, MaskedVectorPendsAndFiresOnUnmask) {
  write_entry(3, 0xfee00000, 0x33, true);
  set_control(0x8000);
  EXPECT_TRUE(msix.signal(3));
  EXPECT_TRUE(irq.msis.empty());
  EXPECT_TRUE(msix.pending(3));
  EXPECT_EQ(pba(), 0x8u);
  write_entry(3, 0xfee00000, 0x33, false);
  ASSERT_EQ(irq.msis.size(), 1u);
  EXPECT_EQ(irq.msis[0].data, 0x33u);
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixFixture, FunctionMaskHoldsEveryVector) {
  write_entry(0, 0xfee00000, 0x40, false);
  write_entry(1, 0xfee00000, 0x41, false);
  set_control(0x8000 | 0x4000);
  msix.signal(0);
  msix.signal(1);
  EXPECT_TRUE(irq.msis.empty());
  EXPECT_EQ(pba(), 0x3u);
  set_control(0x8000);
  ASSERT_EQ(irq.msis.size(), 2u);
  EXPECT_EQ(pba(), 0u);
}

TEST_F(MsixFixture, ResetMasksEverything) {
  write_entry(0, 0xfee00000, 0x40, false);
  set_control(0x8000);
  msix.reset(config);
  EXPECT_FALSE(msix.enabled());
  EXPECT_TRUE(msix.vector_masked(0));
  EXPECT_EQ(config.read(cap + 2, 2), 3u);
}

TEST_F(MsixFixture, RegionChecks) {
  EXPECT_TRUE(msix.in_table(0x800, 64));
  EXPECT_FALSE(msix.in_table(0x800, 65));
  EXPECT_FALSE(msix.in_table(0x7ff, 1));
  EXPECT_TRUE(msix.in_pba(0xc00, 8));
  EXPECT_FALSE(msix.in_pba(0xc08, 1));
  EXPECT_FALSE(msix.in_table(UINT64_MAX, 2));
}

TEST(Msix, RejectsTableOutsideItsBar) {
  PciConfigSpace config(PciConfigSpace::Identity{});
  ASSERT_TRUE(config.add_bar(0, {PciBarKind::kMemory32, 0x1000, false}).ok());
  Msix msix(65, 0, 0xc00, 0x800);  // 65 * 16 bytes from 0xc00 overrun the 4 KiB BAR
  EXPECT_FALSE(msix.install(config).ok());
  Msix overlapping(4, 0, 0x800, 0x830);
  EXPECT_FALSE(overlapping.install(config).ok());
  Msix wrong_bar(4, 2, 0, 0x800);
  EXPECT_FALSE(wrong_bar.install(config).ok());
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

TEST_F(MsixFixture, StateRoundTrip) {
  write_entry(2, 0xfee02000, 0x52, true);
  set_control(0x8000);
  msix.signal(2);
  const Msix::State state = msix.save();
  Msix other(4, 1, 0x800, 0xc00);
  ASSERT_TRUE(other.restore(state).ok());
  EXPECT_TRUE(other.pending(2));
  EXPECT_TRUE(other.vector_masked(2));
  Msix smaller(2, 1, 0x800, 0xc00);
  EXPECT_FALSE(smaller.restore(state).ok());
}

}  // namespace
}  // namespace hostvisor
