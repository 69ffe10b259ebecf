#include "hv/emu/platform/emu_platform.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace hostvisor::emu {
namespace {

class EmuPlatformTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = EmuPlatform::create({.vcpu_count = 2, .clock = &clock_, .start_timer_thread = false});
    ASSERT_TRUE(p.ok()) << p.error().message();
    platform_ = std::move(*p);
    ASSERT_TRUE(platform_->attach(ports_, mmio_).ok());
  }

  void out(uint16_t port, uint8_t v) { ports_.write(port, std::span(&v, 1)); }
  uint8_t in(uint16_t port) {
    uint8_t v = 0;
    ports_.read(port, std::span(&v, 1));
    return v;
  }
  void mmio_write32(uint64_t addr, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    mmio_.write(addr, b);
  }
  uint32_t mmio_read32(uint64_t addr) {
    uint8_t b[4];
    mmio_.read(addr, b);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  void ioapic_write(uint8_t index, uint32_t v) {
    mmio_write32(IoApic::kDefaultBase, index);
    mmio_write32(IoApic::kDefaultBase + 0x10, v);
  }
  void lapic_write(unsigned cpu, uint32_t reg, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    platform_->local_apic(cpu).mmio_write(reg, b);
  }
  uint32_t lapic_read(unsigned cpu, uint32_t reg) {
    uint8_t b[4];
    platform_->local_apic(cpu).mmio_read(reg, b);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  void init_pic() {
    for (auto [port, v] : std::initializer_list<std::pair<uint16_t, uint8_t>>{{0x20, 0x11},
                                                                              {0x21, 0x30},
                                                                              {0x21, 0x04},
                                                                              {0x21, 0x01},
                                                                              {0xa0, 0x11},
                                                                              {0xa1, 0x38},
                                                                              {0xa1, 0x02},
                                                                              {0xa1, 0x01},
                                                                              {0x21, 0x00},
                                                                              {0xa1, 0x00}})
      out(port, v);
  }
  void at(uint64_t ns) {
    clock_.set(ns);
    platform_->timers().run_due();
  }

  ManualClock clock_{1'000'000};
  Bus ports_{"io", 0x10000};
  Bus mmio_{"mmio"};
  std::unique_ptr<EmuPlatform> platform_;
};

TEST_F(EmuPlatformTest, PitThroughPicReachesTheBspInVirtualWireMode) {
  init_pic();
  out(0x43, 0x34);
  out(0x40, 0xa9);
  out(0x40, 0x04);  // 1193: ~1 ms
  LocalApic& bsp = platform_->local_apic(0);
  EXPECT_FALSE(bsp.has_interrupt());
  at(1'000'000 + 1'000'000);
  EXPECT_TRUE(bsp.has_interrupt());
  EXPECT_FALSE(platform_->local_apic(1).has_interrupt());
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x30));
  EXPECT_FALSE(bsp.has_interrupt());
  out(0x20, 0x20);
  at(1'000'000 + 2'000'000);
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x30));
}

TEST_F(EmuPlatformTest, PitReachesIoApicPin2ThroughTheSourceOverride) {
  init_pic();
  out(0x21, 0xff);  // PIC fully masked, as Linux does once the IOAPIC is up
  LocalApic& bsp = platform_->local_apic(0);
  lapic_write(0, LocalApic::kRegSvr, 0x1ff);
  ioapic_write(0x10 + 2 * 2, 0x40);  // pin 2 -> vector 0x40, APIC 0, edge
  ioapic_write(0x11 + 2 * 2, 0);
  EXPECT_EQ(mmio_read32(IoApic::kDefaultBase + 0x10), 0u);
  out(0x43, 0x34);
  out(0x40, 0x00);
  out(0x40, 0x01);  // 256 ticks
  at(1'000'000 + 300'000);
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x40));
  EXPECT_EQ(platform_->io_apic().save().pin_levels & 1, 0u);  // pin 0 untouched
}

TEST_F(EmuPlatformTest, ExtIntThroughTheIoApicRunsThePicAcknowledge) {
  init_pic();
  LocalApic& bsp = platform_->local_apic(0);
  lapic_write(0, LocalApic::kRegSvr, 0x1ff);
  lapic_write(0, LocalApic::kRegLvtLint0, 0x10700);  // LINT0 masked: only the IOAPIC path is left
  ioapic_write(0x10 + 2 * 3, 7u << 8);               // pin 3: ExtINT to APIC 0
  platform_->interrupts().set_irq_line(3, true);
  ASSERT_TRUE(bsp.has_interrupt());
  EXPECT_FALSE(bsp.pending_vector().has_value());
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x33));  // the PIC's vector for IRQ 3
  EXPECT_FALSE(bsp.has_interrupt());
}

TEST_F(EmuPlatformTest, DeviceLinesDriveBothControllers) {
  init_pic();
  LocalApic& bsp = platform_->local_apic(0);
  InterruptController& ic = platform_->interrupts();
  ic.set_irq_line(4, true);  // a UART on ISA IRQ 4
  EXPECT_TRUE(platform_->pic().intr());
  EXPECT_TRUE(platform_->io_apic().save().pin_levels & (1u << 4));
  ic.set_irq_line(4, false);
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x34));
  // PCI INTx on GSI 19: IOAPIC only.
  lapic_write(1, LocalApic::kRegSvr, 0x1ff);
  ioapic_write(0x10 + 2 * 19, (1u << 15) | 0x61);
  ioapic_write(0x11 + 2 * 19, 1u << 24);
  ic.set_irq_line(19, true);
  EXPECT_EQ(platform_->local_apic(1).take_interrupt(), std::optional<uint8_t>(0x61));
  ic.set_irq_line(19, false);
  lapic_write(1, LocalApic::kRegEoi, 0);
  EXPECT_FALSE(platform_->io_apic().redirection_entry(19) & IoApic::kEntryRemoteIrr);
  // The cascade line and lines past the IOAPIC are not connected.
  ic.set_irq_line(2, true);
  ic.set_irq_line(24, true);
  ic.set_irq_line(0xffffffff, true);
  EXPECT_EQ(platform_->io_apic().save().pin_levels, 0u);
  EXPECT_EQ(EmuInterruptController::io_apic_pin(0), 2);
  EXPECT_EQ(EmuInterruptController::io_apic_pin(2), -1);
  EXPECT_EQ(EmuInterruptController::io_apic_pin(9), 9);
}

TEST_F(EmuPlatformTest, MsiThroughTheController) {
  lapic_write(1, LocalApic::kRegSvr, 0x1ff);
  platform_->interrupts().signal_msi(0xfee01000, 0x45);
  EXPECT_EQ(platform_->local_apic(1).take_interrupt(), std::optional<uint8_t>(0x45));
  platform_->interrupts().signal_msi(0x12345678, 0x45);  // dropped, no crash
  EXPECT_FALSE(platform_->local_apic(0).has_interrupt());
}

TEST_F(EmuPlatformTest, Port61AndRangesOnTheBuses) {
  out(0x61, 0x03);
  EXPECT_EQ(in(0x61) & 0x03, 0x03);
  EXPECT_TRUE(platform_->pit().channel2_gate());
  out(0x43, 0xb0);  // channel 2, mode 0, count 1: OUT2 rises one tick later
  out(0x42, 0x01);
  out(0x42, 0x00);
  EXPECT_EQ(in(0x61) & 0x20, 0x00);
  clock_.set(clock_.now_ns() + 1000);
  EXPECT_EQ(in(0x61) & 0x20, 0x20);
  // Mode 1 is gate-triggered: a rising gate through port 0x61 starts it.
  out(0x61, 0x00);
  out(0x43, 0xb2);
  out(0x42, 0x05);
  out(0x42, 0x00);
  EXPECT_EQ(in(0x61) & 0x20, 0x20);  // idle high until triggered
  out(0x61, 0x01);
  EXPECT_EQ(in(0x61) & 0x20, 0x00);
  // A second attach collides with the first.
  EXPECT_FALSE(platform_->attach(ports_, mmio_).ok());
}

TEST_F(EmuPlatformTest, SaveRestoreAcrossPlatforms) {
  init_pic();
  out(0x43, 0x34);
  out(0x40, 0xe8);
  out(0x40, 0x03);  // 1000
  lapic_write(0, LocalApic::kRegSvr, 0x1ff);
  platform_->interrupts().signal_msi(0xfee00000, 0x77);
  clock_.advance(300 * 838);  // 300 of the PIT's 1000 input clocks
  const IrqchipState s = platform_->save();
  EXPECT_EQ(s.clock_ns, clock_.now_ns());
  const LocalApic::State lapic0 = platform_->local_apic(0).save();

  ManualClock other_clock(9'000'000);
  auto other = EmuPlatform::create({.vcpu_count = 2, .clock = &other_clock, .start_timer_thread = false});
  ASSERT_TRUE(other.ok());
  (*other)->local_apic(0).restore(lapic0);
  ASSERT_TRUE((*other)->restore(s).ok());
  // The clock goes on from the saved time, not from the new platform's.
  EXPECT_EQ(other_clock.now_ns(), s.clock_ns);
  EXPECT_EQ((*other)->local_apic(0).pending_vector(), std::optional<uint8_t>(0x77));
  EXPECT_EQ((*other)->pic().read_port(0x21), 0x00);
  EXPECT_EQ((*other)->save().pit, s.pit);
  // The PIT's period ends 700 input clocks later, not 1000.
  other_clock.advance(650 * 838);
  (*other)->timers().run_due();
  EXPECT_FALSE((*other)->pic().intr());
  other_clock.advance(60 * 838);
  (*other)->timers().run_due();
  EXPECT_TRUE((*other)->pic().intr());
}

TEST_F(EmuPlatformTest, RestoreCarriesTheTscAndLapicTimerOverToTheNewClock) {
  LocalApic& l = platform_->local_apic(0);
  l.set_tsc_offset(5000);
  lapic_write(0, LocalApic::kRegSvr, 0x1ff);
  lapic_write(0, LocalApic::kRegTimerDivide, 0xb);  // divide by 1: 40 ns a tick
  lapic_write(0, LocalApic::kRegLvtTimer, 0x40);
  lapic_write(0, LocalApic::kRegTimerInitial, 1000);
  clock_.advance(100 * 40);
  const uint64_t tsc = l.guest_tsc();
  IrqchipState s = platform_->save();
  s.clock_ns += 1'000'000'000;  // a restore to another time
  ASSERT_TRUE(platform_->restore(s).ok());
  EXPECT_EQ(clock_.now_ns(), s.clock_ns);
  EXPECT_EQ(l.guest_tsc(), tsc);
  EXPECT_EQ(lapic_read(0, LocalApic::kRegTimerCurrent), 900u);
}

TEST_F(EmuPlatformTest, ResetReturnsEverythingToPowerOn) {
  init_pic();
  out(0x43, 0x34);
  out(0x40, 0x00);
  out(0x40, 0x10);
  out(0x61, 0x01);
  lapic_write(0, LocalApic::kRegSvr, 0x1ff);
  lapic_write(1, LocalApic::kRegSvr, 0x1ff);
  ioapic_write(0x10, 0x33);
  platform_->interrupts().signal_msi(0xfee01000, 0x45);
  ASSERT_TRUE(platform_->local_apic(1).msr_write(LocalApic::kMsrApicBase, 0xfee00c00).ok());
  platform_->reset();
  EXPECT_FALSE(platform_->timers().next_deadline().has_value());
  EXPECT_FALSE(platform_->pit().channel2_gate());
  EXPECT_EQ(in(0x61) & 0x0f, 0);
  EXPECT_EQ(platform_->io_apic().redirection_entry(0), IoApic::kEntryMasked);
  EXPECT_FALSE(platform_->local_apic(1).has_interrupt());
  EXPECT_FALSE(platform_->local_apic(1).x2apic_mode());
  EXPECT_TRUE(platform_->local_apic(1).waiting_for_sipi());
  EXPECT_EQ(*platform_->local_apic(0).msr_read(LocalApic::kMsrApicBase), 0xfee00900u);
  EXPECT_EQ(platform_->pic().save().chips[0].vector_base, 0);  // the guest initialises it again
}

TEST(EmuPlatformCreate, RejectsBadCpuCountsAndRunsItsTimerThread) {
  EXPECT_FALSE(EmuPlatform::create({.vcpu_count = 0}).ok());
  EXPECT_FALSE(EmuPlatform::create({.vcpu_count = 256}).ok());
  auto p = EmuPlatform::create({.vcpu_count = 1});
  ASSERT_TRUE(p.ok());
  // Real time: a one-shot LAPIC timer of 1 ms fires via the host thread.
  LocalApic& l = (*p)->local_apic(0);
  std::atomic<bool> woke{false};
  l.set_wakeup([&] { woke = true; });
  const uint8_t svr[4] = {0xff, 0x01, 0, 0}, lvt[4] = {0x30, 0, 0, 0}, div[4] = {0x0b, 0, 0, 0};
  const uint32_t count = 25'000;  // 1 ms at 25 MHz
  uint8_t init[4];
  std::memcpy(init, &count, 4);
  l.mmio_write(LocalApic::kRegSvr, svr);
  l.mmio_write(LocalApic::kRegLvtTimer, lvt);
  l.mmio_write(LocalApic::kRegTimerDivide, div);
  l.mmio_write(LocalApic::kRegTimerInitial, init);
  for (int i = 0; i < 5000 && !l.has_interrupt(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(woke.load());
  EXPECT_EQ(l.take_interrupt(), std::optional<uint8_t>(0x30));
}

}  // namespace
}  // namespace hostvisor::emu

namespace hostvisor::emu {
namespace {

// Every component from several threads at once, on the real clock with the
// timer thread: vCPU threads taking interrupts, EOIing and sending IPIs
// while a device thread drives level and edge lines and MSIs and the PIT
// and LAPIC timers fire. Guards the lock ordering (a deadlock hangs the
// test) and checks every source got through.
TEST(EmuPlatformConcurrency, AllSourcesFromManyThreads) {
  auto created = EmuPlatform::create({.vcpu_count = 2});
  ASSERT_TRUE(created.ok());
  EmuPlatform& p = **created;
  Bus ports("io", 0x10000), mmio("mmio");
  ASSERT_TRUE(p.attach(ports, mmio).ok());
  auto lapic_write = [&](unsigned cpu, uint32_t reg, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    p.local_apic(cpu).mmio_write(reg, b);
  };
  auto ioapic_write = [&](uint8_t index, uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &index, 1);
    mmio.write(IoApic::kDefaultBase, std::span(b, 1));
    std::memcpy(b, &v, 4);
    mmio.write(IoApic::kDefaultBase + 0x10, b);
  };
  auto out = [&](uint16_t port, uint8_t v) { ports.write(port, std::span(&v, 1)); };
  for (unsigned cpu = 0; cpu < 2; ++cpu) lapic_write(cpu, LocalApic::kRegSvr, 0x1ff);
  out(0x21, 0xff);  // PIC masked: the PIT goes through IOAPIC pin 2
  out(0xa1, 0xff);
  ioapic_write(0x10 + 2 * 2, 0x40);  // PIT -> CPU 0
  ioapic_write(0x10 + 2 * 4, 0x34);  // edge line -> CPU 0
  ioapic_write(0x10 + 2 * 16, (1u << 15) | 0x50);
  ioapic_write(0x11 + 2 * 16, 1u << 24);  // level line -> CPU 1
  out(0x43, 0x34);
  out(0x40, 0x2a);
  out(0x40, 0x01);  // 298 ticks: 250 us
  lapic_write(1, LocalApic::kRegTimerDivide, 0xb);
  lapic_write(1, LocalApic::kRegLvtTimer, 0x30 | (1u << 17));
  lapic_write(1, LocalApic::kRegTimerInitial, 5000);  // 200 us periodic

  std::atomic<bool> stop{false};
  std::array<std::array<std::atomic<int>, 256>, 2> seen{};
  std::vector<std::thread> threads;
  for (unsigned cpu = 0; cpu < 2; ++cpu) {
    threads.emplace_back([&, cpu] {
      LocalApic& l = p.local_apic(cpu);
      unsigned n = 0;
      while (!stop) {
        if (auto v = l.take_interrupt()) {
          ++seen[cpu][*v];
          // The level line's handler quiets the device before its EOI.
          if (*v == 0x50) p.interrupts().set_irq_line(16, false);
          lapic_write(cpu, LocalApic::kRegEoi, 0);
        }
        if (++n % 64 == 0) {
          lapic_write(cpu, LocalApic::kRegIcrHigh, (cpu ^ 1) << 24);
          lapic_write(cpu, LocalApic::kRegIcrLow, 0x60 + cpu);
        }
        std::this_thread::yield();
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop) {
      p.interrupts().set_irq_line(16, true);
      p.interrupts().set_irq_line(4, true);
      p.interrupts().set_irq_line(4, false);
      p.interrupts().signal_msi(0xfee01000, 0x70);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& t : threads) t.join();

  EXPECT_GT(seen[0][0x40].load(), 0) << "PIT via IOAPIC pin 2";
  EXPECT_GT(seen[0][0x34].load(), 0) << "edge line";
  EXPECT_GT(seen[1][0x50].load(), 0) << "level line";
  EXPECT_GT(seen[1][0x30].load(), 0) << "LAPIC timer";
  EXPECT_GT(seen[1][0x70].load(), 0) << "MSI";
  EXPECT_GT(seen[1][0x60].load(), 0) << "IPI 0 -> 1";
  EXPECT_GT(seen[0][0x61].load(), 0) << "IPI 1 -> 0";
}

}  // namespace
}  // namespace hostvisor::emu
