#include "devices/acpi/pm_block.h"

#include <gtest/gtest.h>

#include <vector>

#include "devices/testing/recording_system_control.h"
#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

struct PmFixture : ::testing::Test {
  testing::RecordingSystemControl system;
  testing::RecordingInterruptController irq;
  uint64_t now_ns = 0;
  AcpiPmBlock pm{&system, IrqLine(&irq, 9), 0x01, 5, [this] { return now_ns; }};

  void out16(uint64_t off, uint16_t v) { pm.write(off, std::span(reinterpret_cast<const uint8_t*>(&v), 2)); }
  uint16_t in16(uint64_t off) {
    uint16_t v = 0;
    pm.read(off, std::span(reinterpret_cast<uint8_t*>(&v), 2));
    return v;
  }
  uint32_t in32(uint64_t off) {
    uint32_t v = 0;
    pm.read(off, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
};

TEST_F(PmFixture, SleepTypeS5WithSleepEnablePowersOff) {
  EXPECT_EQ(in16(AcpiPmBlock::kControl) & AcpiPmBlock::kSciEnable, AcpiPmBlock::kSciEnable);
  out16(AcpiPmBlock::kControl, 5 << 10);  // type alone does nothing
  EXPECT_EQ(system.poweroffs, 0);
  out16(AcpiPmBlock::kControl, (5 << 10) | AcpiPmBlock::kSleepEnable);
  EXPECT_EQ(system.poweroffs, 1);
  EXPECT_EQ(in16(AcpiPmBlock::kControl) & AcpiPmBlock::kSleepEnable, 0);  // write-only bit
  out16(AcpiPmBlock::kControl, (3 << 10) | AcpiPmBlock::kSleepEnable);    // S3 is not supported: ignored
  EXPECT_EQ(system.poweroffs, 1);
}

TEST_F(PmFixture, ResetRegisterResetsOnlyWithTheFadtValue) {
  const uint8_t wrong = 0x02, right = 0x01;
  pm.write(AcpiPmBlock::kReset, std::span(&wrong, 1));
  EXPECT_EQ(system.resets, 0);
  pm.write(AcpiPmBlock::kReset, std::span(&right, 1));
  EXPECT_EQ(system.resets, 1);
}

TEST_F(PmFixture, PowerButtonRaisesSciWhenEnabledAndStatusIsWriteOneToClear) {
  pm.press_power_button();
  EXPECT_TRUE(irq.calls().empty());  // not enabled yet
  out16(AcpiPmBlock::kEventEnable, AcpiPmBlock::kPowerButtonStatus);
  ASSERT_FALSE(irq.calls().empty());
  EXPECT_EQ(irq.calls().back(), (std::pair<uint32_t, bool>{9, true}));
  EXPECT_EQ(in16(AcpiPmBlock::kEventStatus) & AcpiPmBlock::kPowerButtonStatus, AcpiPmBlock::kPowerButtonStatus);
  out16(AcpiPmBlock::kEventStatus, AcpiPmBlock::kPowerButtonStatus);
  EXPECT_EQ(in16(AcpiPmBlock::kEventStatus), 0);
  EXPECT_EQ(irq.calls().back(), (std::pair<uint32_t, bool>{9, false}));
}

TEST_F(PmFixture, ARaisedGpeInterruptsOnceEnabledAndIsWriteOneToClear) {
  pm.raise_gpe0(3);
  pm.raise_gpe0(16);  // beyond the block: ignored
  EXPECT_FALSE(irq.level(9));
  EXPECT_EQ(in16(AcpiPmBlock::kGpe0Status), 1u << 3);
  out16(AcpiPmBlock::kGpe0Enable, 1u << 3);
  EXPECT_TRUE(irq.level(9));
  out16(AcpiPmBlock::kGpe0Status, 1u << 3);
  EXPECT_EQ(in16(AcpiPmBlock::kGpe0Status), 0);
  EXPECT_FALSE(irq.level(9));
  pm.raise_gpe0(3);  // enabled now: at once
  EXPECT_TRUE(irq.level(9));
}

TEST_F(PmFixture, TimerCountsAt3579545Hz) {
  now_ns = 0;
  const uint32_t t0 = in32(AcpiPmBlock::kTimer);
  now_ns = 1000000000;  // one second later
  EXPECT_EQ(in32(AcpiPmBlock::kTimer) - t0, 3579545u);
  const uint32_t before = in32(AcpiPmBlock::kTimer);
  uint32_t v = 0xdeadbeef;
  pm.write(AcpiPmBlock::kTimer, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
  EXPECT_EQ(in32(AcpiPmBlock::kTimer), before);  // read-only
}

TEST_F(PmFixture, OutOfRangeReadsAreAllOnesAndStateRoundTrips) {
  uint8_t b = 0;
  pm.read(AcpiPmBlock::kSize, std::span(&b, 1));
  EXPECT_EQ(b, 0xff);
  out16(AcpiPmBlock::kEventEnable, 0x0100);
  auto s = pm.save();
  EXPECT_EQ(s.event_enable, 0x0100);
  out16(AcpiPmBlock::kEventEnable, 0);
  pm.restore(s);
  EXPECT_EQ(in16(AcpiPmBlock::kEventEnable), 0x0100);
}

}  // namespace
}  // namespace hostvisor
