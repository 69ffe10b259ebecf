#include "hv/emu/platform/msi.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "hv/emu/platform/apic_bus.h"
#include "hv/emu/platform/local_apic.h"

namespace hostvisor::emu {
namespace {

TEST(Msi, DecodesAddressAndData) {
  auto m = decode_msi(0xfee00000 | (3u << 12) | (1u << 2), 0x8000 | 0x4000 | (4u << 8) | 0x42);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->destination, 3u);
  EXPECT_TRUE(m->logical);
  EXPECT_EQ(m->mode, DeliveryMode::kNmi);
  EXPECT_EQ(m->vector, 0x42);
  EXPECT_TRUE(m->level_triggered);
  EXPECT_TRUE(m->assert_level);

  auto plain = decode_msi(0xfee01000, 0x0031);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->destination, 1u);
  EXPECT_FALSE(plain->logical);
  EXPECT_EQ(plain->mode, DeliveryMode::kFixed);
  EXPECT_FALSE(plain->level_triggered);
}

TEST(Msi, RedirectionHintMakesFixedLowestPriority) {
  auto m = decode_msi(0xfee00008, 0x41);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->mode, DeliveryMode::kLowestPriority);
}

TEST(Msi, RejectsBadAddressesAndModes) {
  EXPECT_FALSE(decode_msi(0xfed00000, 0x41).ok());
  EXPECT_FALSE(decode_msi(0x1fee00000ull, 0x41).ok());
  auto reserved = decode_msi(0xfee00000, (3u << 8) | 0x41);
  ASSERT_FALSE(reserved.ok());
  EXPECT_EQ(reserved.error().code(), ErrorCode::kGuest);
  EXPECT_FALSE(decode_msi(0xfee00000, (6u << 8) | 0x41).ok());
}

TEST(Msi, DeliversThroughTheApicBus) {
  ManualClock clock;
  PlatformTimers timers(clock);
  ApicBus bus;
  std::vector<std::unique_ptr<LocalApic>> lapics;
  for (unsigned i = 0; i < 3; ++i) {
    lapics.push_back(std::make_unique<LocalApic>(i, i == 0, bus, timers));
    bus.add(*lapics.back());
    const uint8_t svr[4] = {0xff, 0x01, 0, 0};
    lapics.back()->mmio_write(LocalApic::kRegSvr, svr);
  }
  auto n = bus.signal_msi(0xfee02000, 0x61);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(lapics[2]->take_interrupt(), std::optional<uint8_t>(0x61));
  EXPECT_FALSE(lapics[0]->has_interrupt());
  EXPECT_FALSE(lapics[1]->has_interrupt());
  // No APIC with id 7: nobody takes it.
  EXPECT_EQ(*bus.signal_msi(0xfee07000, 0x61), 0u);
  EXPECT_FALSE(bus.signal_msi(0xfee07000, (3u << 8) | 0x61).ok());
}

}  // namespace
}  // namespace hostvisor::emu
