#include "hv/emu/platform/local_apic.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "hv/emu/platform/apic_bus.h"

namespace hostvisor::emu {
namespace {

class LocalApicTest : public ::testing::Test {
 protected:
  void SetUp() override { make(2); }

  void make(unsigned count) {
    lapics_.clear();
    bus_ = std::make_unique<ApicBus>();
    for (unsigned i = 0; i < count; ++i) {
      lapics_.push_back(std::make_unique<LocalApic>(i, i == 0, *bus_, timers_));
      bus_->add(*lapics_.back());
    }
  }

  LocalApic& lapic(unsigned i) { return *lapics_[i]; }

  static void write(LocalApic& l, uint32_t reg, uint32_t value) {
    uint8_t b[4];
    std::memcpy(b, &value, 4);
    l.mmio_write(reg, b);
  }
  static uint32_t read(LocalApic& l, uint32_t reg) {
    uint8_t b[4];
    l.mmio_read(reg, b);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  static void enable(LocalApic& l) { write(l, LocalApic::kRegSvr, 0x1ff); }
  static ApicMessage fixed(uint8_t vector, uint32_t dest = 0, bool level = false) {
    ApicMessage m;
    m.vector = vector;
    m.destination = dest;
    m.level_triggered = level;
    return m;
  }
  static bool isr_bit(LocalApic& l, uint8_t v) { return (read(l, LocalApic::kRegIsr + (v / 32) * 16) >> (v % 32)) & 1; }

  // Moves the clock to `ns` and fires due timers.
  void at(uint64_t ns) {
    clock_.set(ns);
    timers_.run_due();
  }

  ManualClock clock_{1'000'000};
  PlatformTimers timers_{clock_};
  std::unique_ptr<ApicBus> bus_;
  std::vector<std::unique_ptr<LocalApic>> lapics_;
};

TEST_F(LocalApicTest, ResetStateMatchesTheSdm) {
  LocalApic& bsp = lapic(0);
  EXPECT_EQ(read(bsp, LocalApic::kRegVersion), 0x50014u);
  EXPECT_EQ(read(bsp, LocalApic::kRegId), 0u);
  EXPECT_EQ(read(lapic(1), LocalApic::kRegId), 1u << 24);
  EXPECT_EQ(read(bsp, LocalApic::kRegSvr), 0xffu);
  EXPECT_EQ(read(bsp, LocalApic::kRegDfr), 0xffffffffu);
  EXPECT_EQ(read(bsp, LocalApic::kRegLvtTimer), 1u << 16);
  // Virtual wire: the BSP's LINT0 is unmasked ExtINT, the AP's masked.
  EXPECT_EQ(read(bsp, LocalApic::kRegLvtLint0), 0x700u);
  EXPECT_EQ(read(lapic(1), LocalApic::kRegLvtLint0), 1u << 16);
  EXPECT_EQ(*bsp.msr_read(LocalApic::kMsrApicBase), 0xfee00900u);
  EXPECT_EQ(*lapic(1).msr_read(LocalApic::kMsrApicBase), 0xfee00800u);
  EXPECT_TRUE(bsp.mmio_enabled());
  EXPECT_EQ(bsp.base_address(), LocalApic::kDefaultBase);
  EXPECT_FALSE(bsp.waiting_for_sipi());
  EXPECT_TRUE(lapic(1).waiting_for_sipi());
}

TEST_F(LocalApicTest, PriorityIrrIsrPprAndEoi) {
  LocalApic& l = lapic(0);
  enable(l);
  l.accept(fixed(0x40));
  ASSERT_EQ(l.pending_vector(), std::optional<uint8_t>(0x40));
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x40));
  EXPECT_TRUE(isr_bit(l, 0x40));
  EXPECT_EQ(read(l, LocalApic::kRegPpr), 0x40u);
  // Same or lower priority class waits; a higher class preempts.
  l.accept(fixed(0x45));
  l.accept(fixed(0x35));
  EXPECT_FALSE(l.pending_vector().has_value());
  EXPECT_FALSE(l.has_interrupt());
  l.accept(fixed(0x51));
  EXPECT_EQ(l.pending_vector(), std::optional<uint8_t>(0x51));
  l.acknowledge(0x51);
  EXPECT_EQ(read(l, LocalApic::kRegPpr), 0x50u);
  // EOI ends the highest in service first.
  write(l, LocalApic::kRegEoi, 0);
  EXPECT_FALSE(isr_bit(l, 0x51));
  EXPECT_TRUE(isr_bit(l, 0x40));
  EXPECT_FALSE(l.pending_vector().has_value());  // 0x45 is in class 4, still blocked by 0x40
  write(l, LocalApic::kRegEoi, 0);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x45));
  write(l, LocalApic::kRegEoi, 0);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x35));
  write(l, LocalApic::kRegEoi, 0);
  EXPECT_FALSE(l.take_interrupt().has_value());
  EXPECT_EQ(read(l, LocalApic::kRegPpr), 0u);
}

TEST_F(LocalApicTest, NeedsAttentionSummarisesPendingEvents) {
  LocalApic& bsp = lapic(0);
  EXPECT_FALSE(bsp.needs_attention());
  EXPECT_TRUE(lapic(1).needs_attention());  // an AP waiting for SIPI
  enable(bsp);
  write(bsp, LocalApic::kRegTpr, 0x50);
  bsp.accept(fixed(0x45));
  EXPECT_FALSE(bsp.needs_attention());  // masked by the TPR
  write(bsp, LocalApic::kRegTpr, 0x00);
  EXPECT_TRUE(bsp.needs_attention());
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x45));
  EXPECT_FALSE(bsp.needs_attention());
  ApicMessage nmi;
  nmi.mode = DeliveryMode::kNmi;
  bsp.accept(nmi);
  EXPECT_TRUE(bsp.needs_attention());
  EXPECT_TRUE(bsp.take_nmi());
  EXPECT_FALSE(bsp.needs_attention());
  write(bsp, LocalApic::kRegLvtLint0, 0x700);
  bsp.set_lint0(true);  // PIC INTR through ExtINT
  EXPECT_TRUE(bsp.needs_attention());
  bsp.set_lint0(false);
  EXPECT_FALSE(bsp.needs_attention());
}

TEST_F(LocalApicTest, TprMasksLowerClassesAndMirrorsCr8) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegTpr, 0x50);
  EXPECT_EQ(l.cr8(), 5);
  l.accept(fixed(0x45));
  l.accept(fixed(0x55));
  EXPECT_FALSE(l.pending_vector().has_value());  // class 5 is not above TPR class 5
  l.accept(fixed(0x65));
  EXPECT_EQ(l.pending_vector(), std::optional<uint8_t>(0x65));
  l.set_cr8(2);
  EXPECT_EQ(read(l, LocalApic::kRegTpr), 0x20u);
  EXPECT_EQ(read(l, LocalApic::kRegPpr), 0x20u);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x65));
  write(l, LocalApic::kRegEoi, 0);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x55));
}

TEST_F(LocalApicTest, SoftwareDisabledApicDropsFixedButTakesNmi) {
  LocalApic& l = lapic(0);
  l.accept(fixed(0x40));
  EXPECT_FALSE(l.pending_vector().has_value());
  ApicMessage nmi;
  nmi.mode = DeliveryMode::kNmi;
  l.accept(nmi);
  EXPECT_TRUE(l.has_nmi());
  EXPECT_TRUE(l.take_nmi());
  EXPECT_FALSE(l.take_nmi());
}

TEST_F(LocalApicTest, IllegalVectorSetsEsrAndSignalsTheErrorLvt) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegLvtError, 0xfe);
  l.accept(fixed(0x05));
  EXPECT_EQ(read(l, LocalApic::kRegEsr), 0u);  // visible only after an ESR write
  write(l, LocalApic::kRegEsr, 0);
  EXPECT_EQ(read(l, LocalApic::kRegEsr), 0x40u);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0xfe));
  write(l, LocalApic::kRegEsr, 0);
  EXPECT_EQ(read(l, LocalApic::kRegEsr), 0u);
}

TEST_F(LocalApicTest, MmioAccessWidths) {
  LocalApic& l = lapic(0);
  uint8_t one = 0;
  l.mmio_read(LocalApic::kRegVersion, std::span(&one, 1));
  EXPECT_EQ(one, 0x14);
  uint8_t two[2] = {};
  l.mmio_read(LocalApic::kRegVersion + 2, two);
  EXPECT_EQ(two[0], 0x05);
  uint8_t eight[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  l.mmio_read(LocalApic::kRegVersion, eight);
  EXPECT_EQ(eight[0], 0);  // wider than a register: zeros
  // A 2-byte write is ignored.
  const uint8_t w[2] = {0x55, 0};
  l.mmio_write(LocalApic::kRegTpr, w);
  EXPECT_EQ(read(l, LocalApic::kRegTpr), 0u);
  // Out of the page: harmless.
  l.mmio_read(0x5000, eight);
  write(l, 0xfff0, 1);
}

TEST_F(LocalApicTest, OneShotTimerCountsAtTheCrystalRate) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegTimerDivide, 0xb);  // divide by 1: 40 ns per count
  write(l, LocalApic::kRegLvtTimer, 0x30);
  const uint64_t t0 = clock_.now_ns();
  write(l, LocalApic::kRegTimerInitial, 1000);
  EXPECT_EQ(timers_.next_deadline(), std::optional<uint64_t>(t0 + 40'000));
  at(t0 + 39'999);
  EXPECT_EQ(read(l, LocalApic::kRegTimerCurrent), 1u);
  EXPECT_FALSE(l.has_interrupt());
  at(t0 + 40'000);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x30));
  EXPECT_EQ(read(l, LocalApic::kRegTimerCurrent), 0u);
  EXPECT_FALSE(timers_.next_deadline().has_value());
  write(l, LocalApic::kRegEoi, 0);
  at(t0 + 1'000'000);
  EXPECT_FALSE(l.has_interrupt());
}

TEST_F(LocalApicTest, PeriodicTimerReloadsAndCoalescesMissedPeriods) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegTimerDivide, 0x0);  // divide by 2: 80 ns per count
  write(l, LocalApic::kRegLvtTimer, 0x31 | (1u << 17));
  const uint64_t t0 = clock_.now_ns();
  constexpr uint64_t kPeriod = 5000 * 80;  // 400 us
  write(l, LocalApic::kRegTimerInitial, 5000);
  int fired = 0;
  for (uint64_t period = 1; period <= 3; ++period) {
    at(t0 + period * kPeriod - 1);
    EXPECT_FALSE(l.has_interrupt());
    at(t0 + period * kPeriod);
    if (l.take_interrupt() == std::optional<uint8_t>(0x31)) ++fired;
    write(l, LocalApic::kRegEoi, 0);
  }
  EXPECT_EQ(fired, 3);
  at(t0 + 3 * kPeriod + kPeriod / 2);
  EXPECT_EQ(read(l, LocalApic::kRegTimerCurrent), 2500u);
  // Five periods late: one interrupt, and the next deadline keeps the phase.
  at(t0 + 8 * kPeriod + 100);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x31));
  EXPECT_FALSE(l.take_interrupt().has_value());
  EXPECT_EQ(timers_.next_deadline(), std::optional<uint64_t>(t0 + 9 * kPeriod));
  // Writing 0 to the initial count stops it.
  write(l, LocalApic::kRegTimerInitial, 0);
  EXPECT_FALSE(timers_.next_deadline().has_value());
}

TEST_F(LocalApicTest, ShortPeriodsAreRateLimitedButCountExactly) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegTimerDivide, 0xb);
  write(l, LocalApic::kRegLvtTimer, 0x31 | (1u << 17));
  const uint64_t t0 = clock_.now_ns();
  write(l, LocalApic::kRegTimerInitial, 25);  // 1 us period
  at(t0 + 1000);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x31));
  write(l, LocalApic::kRegEoi, 0);
  EXPECT_EQ(timers_.next_deadline(), std::optional<uint64_t>(t0 + 1000 + kMinPeriodicTimerNs));
  at(t0 + 1000 + 40 * 5);
  EXPECT_EQ(read(l, LocalApic::kRegTimerCurrent), 20u);  // the count still runs at the programmed rate
  EXPECT_FALSE(l.has_interrupt());
  at(t0 + 1000 + kMinPeriodicTimerNs);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x31));
}

TEST_F(LocalApicTest, SwitchingOneShotToPeriodicKeepsCounting) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegTimerDivide, 0xb);
  write(l, LocalApic::kRegLvtTimer, 0x30);
  const uint64_t t0 = clock_.now_ns();
  write(l, LocalApic::kRegTimerInitial, 10000);  // 400 us
  at(t0 + 40 * 3000);
  write(l, LocalApic::kRegLvtTimer, 0x30 | (1u << 17));
  EXPECT_EQ(read(l, LocalApic::kRegTimerCurrent), 7000u);
  at(t0 + 40 * 10000);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x30));
  write(l, LocalApic::kRegEoi, 0);
  at(t0 + 40 * 20000);  // periodic now: reloaded
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x30));
  // Into TSC-deadline mode: disarmed, initial count cleared.
  write(l, LocalApic::kRegLvtTimer, 0x30 | (2u << 17));
  EXPECT_EQ(read(l, LocalApic::kRegTimerInitial), 0u);
  EXPECT_FALSE(timers_.next_deadline().has_value());
}

TEST_F(LocalApicTest, MaskedTimerStillCountsButDoesNotInterrupt) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegTimerDivide, 0xb);
  write(l, LocalApic::kRegLvtTimer, 0x30 | (1u << 16));
  const uint64_t t0 = clock_.now_ns();
  write(l, LocalApic::kRegTimerInitial, 10);
  at(t0 + 400);
  EXPECT_FALSE(l.has_interrupt());
  EXPECT_EQ(read(l, LocalApic::kRegTimerCurrent), 0u);
}

TEST_F(LocalApicTest, TscDeadlineTimer) {
  LocalApic& l = lapic(0);
  enable(l);
  // Not in TSC-deadline mode: the MSR ignores writes and reads 0.
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrTscDeadline, 12345).ok());
  EXPECT_EQ(*l.msr_read(LocalApic::kMsrTscDeadline), 0u);
  write(l, LocalApic::kRegLvtTimer, 0x32 | (2u << 17));
  l.set_tsc_offset(1'000'000);
  const uint64_t t0 = clock_.now_ns();
  EXPECT_EQ(l.guest_tsc(), tsc_at_ns(t0) + 1'000'000);
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrTscDeadline, l.guest_tsc() + 2000).ok());
  EXPECT_EQ(timers_.next_deadline(), std::optional<uint64_t>(t0 + 1000));
  // Initial-count writes are ignored in this mode.
  write(l, LocalApic::kRegTimerInitial, 5);
  EXPECT_EQ(read(l, LocalApic::kRegTimerInitial), 0u);
  at(t0 + 999);
  EXPECT_FALSE(l.has_interrupt());
  at(t0 + 1000);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x32));
  EXPECT_EQ(*l.msr_read(LocalApic::kMsrTscDeadline), 0u);
  // A deadline in the past fires at once.
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrTscDeadline, 1).ok());
  timers_.run_due();
  write(l, LocalApic::kRegEoi, 0);
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x32));
  // Leaving the mode disarms.
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrTscDeadline, l.guest_tsc() + 100000).ok());
  write(l, LocalApic::kRegLvtTimer, 0x32);
  EXPECT_FALSE(timers_.next_deadline().has_value());
}

TEST_F(LocalApicTest, FixedIpiReachesOnlyItsTarget) {
  enable(lapic(0));
  enable(lapic(1));
  write(lapic(0), LocalApic::kRegIcrHigh, 1u << 24);
  write(lapic(0), LocalApic::kRegIcrLow, 0x41);  // fixed, physical, edge
  EXPECT_EQ(lapic(1).pending_vector(), std::optional<uint8_t>(0x41));
  EXPECT_FALSE(lapic(0).pending_vector().has_value());
  EXPECT_EQ(read(lapic(0), LocalApic::kRegIcrLow), 0x41u);  // delivery status idle
  // Shorthand: all excluding self.
  write(lapic(1), LocalApic::kRegIcrLow, 0x42 | (3u << 18));
  EXPECT_EQ(lapic(0).pending_vector(), std::optional<uint8_t>(0x42));
  EXPECT_EQ(lapic(1).pending_vector(), std::optional<uint8_t>(0x41));
  // Self.
  write(lapic(1), LocalApic::kRegIcrLow, 0x43 | (1u << 18));
  EXPECT_EQ(lapic(1).pending_vector(), std::optional<uint8_t>(0x43));
  // Broadcast by destination 0xFF.
  write(lapic(0), LocalApic::kRegIcrHigh, 0xffu << 24);
  write(lapic(0), LocalApic::kRegIcrLow, 0x60);
  EXPECT_EQ(lapic(0).pending_vector(), std::optional<uint8_t>(0x60));
  EXPECT_EQ(lapic(1).pending_vector(), std::optional<uint8_t>(0x60));
}

TEST_F(LocalApicTest, LogicalDestinationsFlatAndCluster) {
  enable(lapic(0));
  enable(lapic(1));
  write(lapic(0), LocalApic::kRegLdr, 0x01u << 24);
  write(lapic(1), LocalApic::kRegLdr, 0x02u << 24);
  EXPECT_FALSE(lapic(0).matches(0x02, true));
  EXPECT_TRUE(lapic(1).matches(0x02, true));
  EXPECT_TRUE(lapic(0).matches(0x03, true));
  write(lapic(0), LocalApic::kRegIcrHigh, 0x02u << 24);
  write(lapic(0), LocalApic::kRegIcrLow, 0x44 | (1u << 11));
  EXPECT_EQ(lapic(1).pending_vector(), std::optional<uint8_t>(0x44));
  // Cluster model: cluster 1, member bit 2.
  write(lapic(1), LocalApic::kRegDfr, 0x0fffffff);
  EXPECT_EQ(read(lapic(1), LocalApic::kRegDfr), 0x0fffffffu);
  write(lapic(1), LocalApic::kRegLdr, 0x12u << 24);
  EXPECT_TRUE(lapic(1).matches(0x12, true));
  EXPECT_TRUE(lapic(1).matches(0x13, true));
  EXPECT_FALSE(lapic(1).matches(0x22, true));
  EXPECT_FALSE(lapic(1).matches(0x11, true));
}

TEST_F(LocalApicTest, LowestPriorityGoesToTheLowestNumberedTarget) {
  enable(lapic(0));
  enable(lapic(1));
  write(lapic(0), LocalApic::kRegLdr, 0x01u << 24);
  write(lapic(1), LocalApic::kRegLdr, 0x02u << 24);
  ApicMessage m = fixed(0x70, 0x03);
  m.logical = true;
  m.mode = DeliveryMode::kLowestPriority;
  EXPECT_EQ(bus_->deliver(m), 1u);
  EXPECT_EQ(lapic(0).pending_vector(), std::optional<uint8_t>(0x70));
  EXPECT_FALSE(lapic(1).pending_vector().has_value());
}

TEST_F(LocalApicTest, InitAndStartupIpisStartAnAp) {
  LocalApic& ap = lapic(1);
  std::atomic<int> wakes{0};
  ap.set_wakeup([&] { ++wakes; });
  // A SIPI before INIT is taken by an AP that has never run: it waits.
  write(lapic(0), LocalApic::kRegIcrHigh, 1u << 24);
  write(lapic(0), LocalApic::kRegIcrLow, 0x4500);  // INIT, assert
  EXPECT_TRUE(ap.has_init());
  EXPECT_GE(wakes.load(), 1);
  EXPECT_TRUE(ap.take_init());
  EXPECT_TRUE(ap.waiting_for_sipi());
  EXPECT_FALSE(ap.take_init());
  // INIT level de-assert does nothing.
  write(lapic(0), LocalApic::kRegIcrLow, 0x8500);
  EXPECT_FALSE(ap.has_init());
  write(lapic(0), LocalApic::kRegIcrLow, 0x4608);  // SIPI, vector 8 -> 0x8000
  EXPECT_TRUE(ap.has_sipi());
  EXPECT_EQ(ap.take_sipi(), std::optional<uint8_t>(8));
  EXPECT_FALSE(ap.waiting_for_sipi());
  // The second SIPI of the usual INIT-SIPI-SIPI finds it running: dropped.
  write(lapic(0), LocalApic::kRegIcrLow, 0x4609);
  EXPECT_FALSE(ap.has_sipi());
  EXPECT_FALSE(ap.take_sipi().has_value());
}

TEST_F(LocalApicTest, InitResetsRegistersButKeepsIdAndBase) {
  LocalApic& ap = lapic(1);
  enable(ap);
  write(ap, LocalApic::kRegTpr, 0x30);
  ap.accept(fixed(0x80));
  ApicMessage init;
  init.mode = DeliveryMode::kInit;
  ap.accept(init);
  // A SIPI right behind the INIT survives the INIT's reset.
  ApicMessage sipi;
  sipi.mode = DeliveryMode::kStartup;
  sipi.vector = 0x10;
  ap.accept(sipi);
  EXPECT_FALSE(ap.take_sipi().has_value());  // INIT first
  ASSERT_TRUE(ap.take_init());
  EXPECT_EQ(read(ap, LocalApic::kRegTpr), 0u);
  EXPECT_EQ(read(ap, LocalApic::kRegSvr), 0xffu);
  EXPECT_FALSE(ap.pending_vector().has_value());
  EXPECT_EQ(read(ap, LocalApic::kRegId), 1u << 24);
  EXPECT_EQ(ap.take_sipi(), std::optional<uint8_t>(0x10));
}

TEST_F(LocalApicTest, NmiIpiAndLint1Nmi) {
  write(lapic(0), LocalApic::kRegIcrHigh, 1u << 24);
  write(lapic(0), LocalApic::kRegIcrLow, 0x400);
  EXPECT_TRUE(lapic(1).take_nmi());
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegLvtLint1, 0x400);  // NMI
  l.set_lint1(true);
  EXPECT_TRUE(l.take_nmi());
  l.set_lint1(true);  // no new edge
  EXPECT_FALSE(l.take_nmi());
}

TEST_F(LocalApicTest, ExtIntFromLint0AsksThePic) {
  LocalApic& bsp = lapic(0);
  int inta = 0;
  bsp.set_extint_source([&] {
    ++inta;
    return uint8_t{0x20};
  });
  EXPECT_FALSE(bsp.has_interrupt());
  bsp.set_lint0(true);
  EXPECT_TRUE(bsp.has_interrupt());
  EXPECT_FALSE(bsp.pending_vector().has_value());  // ExtINT bypasses IRR
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x20));
  EXPECT_EQ(inta, 1);
  // Masking LINT0 (with the APIC enabled) hides the PIC.
  enable(bsp);
  write(bsp, LocalApic::kRegLvtLint0, 0x10700);
  EXPECT_FALSE(bsp.has_interrupt());
  // With the APIC globally disabled, LINT0 is the INTR pin.
  ASSERT_TRUE(bsp.msr_write(LocalApic::kMsrApicBase, 0xfee00000).ok());
  EXPECT_FALSE(bsp.mmio_enabled());
  EXPECT_TRUE(bsp.has_interrupt());
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x20));
}

TEST_F(LocalApicTest, X2apicModeThroughMsrs) {
  LocalApic& l = lapic(1);
  // x2APIC MSRs #GP in xAPIC mode.
  EXPECT_FALSE(l.msr_read(0x802).ok());
  // Disabled -> x2APIC directly is illegal; xAPIC -> x2APIC is fine.
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrApicBase, 0xfee00000).ok());
  EXPECT_FALSE(l.msr_write(LocalApic::kMsrApicBase, 0xfee00c00).ok());
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrApicBase, 0xfee00800).ok());
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrApicBase, 0xfee00c00).ok());
  EXPECT_TRUE(l.x2apic_mode());
  EXPECT_FALSE(l.mmio_enabled());
  EXPECT_EQ(*l.msr_read(0x802), 1u);                      // full APIC id
  EXPECT_EQ(*l.msr_read(0x80d), (0u << 16) | (1u << 1));  // LDR: cluster 0, bit 1
  EXPECT_FALSE(l.msr_read(0x80e).ok());                   // no DFR
  EXPECT_FALSE(l.msr_write(0x802, 5).ok());               // ID is read-only
  EXPECT_FALSE(l.msr_write(0x80b, 1).ok());               // EOI must be 0
  ASSERT_TRUE(l.msr_write(0x80f, 0x1ff).ok());            // SVR
  // ICR is one 64-bit MSR; a self IPI through 0x83F.
  ASSERT_TRUE(l.msr_write(0x83f, 0x55).ok());
  EXPECT_EQ(l.pending_vector(), std::optional<uint8_t>(0x55));
  enable(lapic(0));
  ASSERT_TRUE(l.msr_write(0x830, (uint64_t{0} << 32) | 0x66).ok());
  EXPECT_EQ(lapic(0).pending_vector(), std::optional<uint8_t>(0x66));
  EXPECT_EQ(*l.msr_read(0x830), 0x66u);
  // x2APIC -> xAPIC needs a disable first; reserved base bits #GP.
  EXPECT_FALSE(l.msr_write(LocalApic::kMsrApicBase, 0xfee00800).ok());
  EXPECT_FALSE(l.msr_write(LocalApic::kMsrApicBase, 0xfee00c01).ok());
  // MMIO is not decoded in x2APIC mode.
  EXPECT_EQ(read(l, LocalApic::kRegVersion), 0u);
}

TEST_F(LocalApicTest, ApicBaseRelocation) {
  LocalApic& l = lapic(0);
  ASSERT_TRUE(l.msr_write(LocalApic::kMsrApicBase, 0xfed00900).ok());
  EXPECT_EQ(l.base_address(), 0xfed00000u);
  EXPECT_EQ(*l.msr_read(LocalApic::kMsrApicBase), 0xfed00900u);
  EXPECT_FALSE(l.msr_write(LocalApic::kMsrApicBase, 0xfee00901).ok());
  EXPECT_FALSE(l.msr_write(0x10, 0).ok());  // not an APIC MSR
}

TEST_F(LocalApicTest, WakeupRunsWhenSomethingBecomesDeliverable) {
  LocalApic& l = lapic(0);
  enable(l);
  std::atomic<int> wakes{0};
  l.set_wakeup([&] { ++wakes; });
  l.accept(fixed(0x40));
  EXPECT_EQ(wakes.load(), 1);
  write(l, LocalApic::kRegTimerDivide, 0xb);
  write(l, LocalApic::kRegLvtTimer, 0x30);
  write(l, LocalApic::kRegTimerInitial, 1);
  const int before = wakes.load();
  at(clock_.now_ns() + 40);
  EXPECT_EQ(wakes.load(), before + 1);
}

TEST_F(LocalApicTest, SaveRestoreContinuesTheTimerOnAnotherClock) {
  LocalApic& l = lapic(0);
  enable(l);
  write(l, LocalApic::kRegTimerDivide, 0xb);
  write(l, LocalApic::kRegLvtTimer, 0x30);
  const uint64_t t0 = clock_.now_ns();
  write(l, LocalApic::kRegTimerInitial, 1000);
  l.accept(fixed(0x99));
  at(t0 + 400 * 40);
  const LocalApic::State saved = l.save();
  EXPECT_EQ(saved.timer_elapsed_ns, 400u * 40);

  ManualClock other_clock(50'000'000);
  PlatformTimers other_timers(other_clock);
  ApicBus other_bus;
  LocalApic copy(0, true, other_bus, other_timers);
  other_bus.add(copy);
  copy.restore(saved);
  EXPECT_EQ(read(copy, LocalApic::kRegTimerCurrent), 600u);
  EXPECT_EQ(copy.pending_vector(), std::optional<uint8_t>(0x99));
  EXPECT_EQ(other_timers.next_deadline(), std::optional<uint64_t>(50'000'000 + 600 * 40));
  other_clock.set(50'000'000 + 600 * 40);
  other_timers.run_due();
  copy.acknowledge(0x99);
  write(copy, LocalApic::kRegEoi, 0);
  EXPECT_EQ(copy.take_interrupt(), std::optional<uint8_t>(0x30));
}

}  // namespace
}  // namespace hostvisor::emu
