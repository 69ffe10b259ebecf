#include "hv/emu/platform/pit.h"

#include <gtest/gtest.h>

namespace hostvisor::emu {
namespace {

// Nanoseconds for n PIT input clocks, rounded up (as the PIT schedules).
uint64_t ns_of(uint64_t ticks) { return (ticks * kNsPerSecond + kPitFrequencyHz - 1) / kPitFrequencyHz; }

class PitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pit_.set_irq0_callback([this] { ++edges_; });
    t0_ = clock_.now_ns();
  }

  void at(uint64_t ns) {
    clock_.set(ns);
    timers_.run_due();
  }
  // Counter latch command + two-byte read.
  uint16_t latch_read(unsigned ch) {
    pit_.write_port(Pit::kControl, static_cast<uint8_t>(ch << 6));
    const uint8_t lo = pit_.read_port(static_cast<uint16_t>(Pit::kChannel0 + ch));
    const uint8_t hi = pit_.read_port(static_cast<uint16_t>(Pit::kChannel0 + ch));
    return static_cast<uint16_t>(lo | (hi << 8));
  }
  void program(unsigned ch, uint8_t mode, uint16_t count) {
    pit_.write_port(Pit::kControl, static_cast<uint8_t>((ch << 6) | 0x30 | (mode << 1)));
    pit_.write_port(static_cast<uint16_t>(Pit::kChannel0 + ch), static_cast<uint8_t>(count));
    pit_.write_port(static_cast<uint16_t>(Pit::kChannel0 + ch), static_cast<uint8_t>(count >> 8));
  }

  ManualClock clock_{5'000'000};
  PlatformTimers timers_{clock_};
  Pit pit_{timers_};
  int edges_ = 0;
  uint64_t t0_ = 0;
};

TEST_F(PitTest, Mode2PeriodicIrq0AndCountReadBack) {
  program(0, 2, 1193);  // ~1 kHz, as a HZ=1000 kernel
  EXPECT_EQ(timers_.next_deadline(), std::optional<uint64_t>(t0_ + ns_of(1193)));
  at(t0_ + ns_of(100));
  EXPECT_EQ(latch_read(0), 1193 - 100);
  // Step through 10 ms in 50 us steps: exactly one edge per period.
  int periods_seen = 0;
  for (uint64_t t = 0; t <= 10'000'000; t += 50'000) {
    at(t0_ + t);
    const int expected = static_cast<int>(t * kPitFrequencyHz / kNsPerSecond / 1193);
    EXPECT_EQ(edges_, expected) << "at " << t << " ns";
    periods_seen = expected;
  }
  EXPECT_EQ(periods_seen, 10);
  // The count at a period boundary is the reload value.
  // The count at a period boundary is the reload value; the ten periods
  // skipped by this jump are coalesced into one edge.
  at(t0_ + ns_of(1193 * 20));
  EXPECT_EQ(latch_read(0), 1193);
  EXPECT_EQ(edges_, 11);
}

TEST_F(PitTest, MissedPeriodsAreCoalesced) {
  program(0, 2, 1000);
  at(t0_ + ns_of(1000 * 50) + 10);
  EXPECT_EQ(edges_, 1);
  EXPECT_EQ(timers_.next_deadline(), std::optional<uint64_t>(t0_ + ns_of(1000 * 51)));
}

TEST_F(PitTest, ShortPeriodsAreRateLimited) {
  program(0, 2, 100);  // 84 us
  at(t0_ + ns_of(100));
  EXPECT_EQ(edges_, 1);
  EXPECT_EQ(timers_.next_deadline(), std::optional<uint64_t>(t0_ + ns_of(100) + kMinPeriodicTimerNs));
  at(t0_ + ns_of(150));
  EXPECT_EQ(latch_read(0), 50);  // the counter itself runs at the programmed rate
  at(t0_ + ns_of(100) + kMinPeriodicTimerNs);
  EXPECT_EQ(edges_, 2);
}

TEST_F(PitTest, Mode0InterruptOnTerminalCount) {
  program(0, 0, 1000);
  EXPECT_FALSE(pit_.channel_output(0));
  at(t0_ + ns_of(999));
  EXPECT_EQ(edges_, 0);
  EXPECT_EQ(latch_read(0), 1);
  at(t0_ + ns_of(1000));
  EXPECT_EQ(edges_, 1);
  EXPECT_TRUE(pit_.channel_output(0));
  EXPECT_FALSE(timers_.next_deadline().has_value());
  // The counter wraps and keeps counting; the output stays high.
  at(t0_ + ns_of(1010));
  EXPECT_EQ(latch_read(0), 0xffff - 9);
  at(t0_ + ns_of(100000));
  EXPECT_EQ(edges_, 1);
}

TEST_F(PitTest, LatchHoldsTheValueUntilRead) {
  program(0, 2, 5000);
  at(t0_ + ns_of(10));
  pit_.write_port(Pit::kControl, 0x00);
  at(t0_ + ns_of(500));
  pit_.write_port(Pit::kControl, 0x00);  // a second latch before reading is ignored
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), (5000 - 10) & 0xff);
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), (5000 - 10) >> 8);
  // Unlatched reads follow the live count.
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), (5000 - 500) & 0xff);
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), (5000 - 500) >> 8);
}

TEST_F(PitTest, ReadBackCommandLatchesStatusAndCount) {
  program(0, 2, 300);
  at(t0_ + ns_of(30));
  pit_.write_port(Pit::kControl, 0xc2);  // read-back: count and status of channel 0
  // Status: OUT high, count loaded, lobyte/hibyte, mode 2, binary.
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), 0x80 | 0x30 | 0x04);
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), 270 & 0xff);
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), 270 >> 8);
  // Null count right after the control word.
  pit_.write_port(Pit::kControl, 0x34);
  pit_.write_port(Pit::kControl, 0xe2);  // status only
  EXPECT_EQ(pit_.read_port(Pit::kChannel0) & 0x40, 0x40);
}

TEST_F(PitTest, Channel2GateAndOutputThroughPort61LikeLinuxCalibration) {
  // pit_calibrate_tsc(): gate on, speaker off; channel 2 mode 0 with a
  // 10 ms count; then poll port 0x61 bit 5 for the output.
  SystemControlPortB port61(&pit_);
  auto in61 = [&] {
    uint8_t v = 0;
    port61.read(0, std::span(&v, 1));
    return v;
  };
  const uint8_t v = static_cast<uint8_t>((in61() & ~0x02) | 0x01);
  port61.write(0, std::span(&v, 1));
  EXPECT_TRUE(pit_.channel2_gate());
  pit_.write_port(Pit::kControl, 0xb0);
  pit_.write_port(Pit::kChannel2, 11932 & 0xff);
  pit_.write_port(Pit::kChannel2, 11932 >> 8);
  at(t0_ + ns_of(11932) - 1);
  EXPECT_EQ(in61() & SystemControlPortB::kTimer2Output, 0);
  at(t0_ + ns_of(11932));
  EXPECT_EQ(in61() & SystemControlPortB::kTimer2Output, SystemControlPortB::kTimer2Output);
  EXPECT_EQ(edges_, 0);  // channel 2 drives no interrupt
  // Gate low pauses a mode 0 count.
  pit_.write_port(Pit::kControl, 0xb0);
  pit_.write_port(Pit::kChannel2, 0x00);
  pit_.write_port(Pit::kChannel2, 0x10);  // 4096
  at(t0_ + ns_of(11932) + ns_of(96));
  pit_.set_channel2_gate(false);
  at(t0_ + 50'000'000);
  EXPECT_EQ(latch_read(2), 4000);
  pit_.set_channel2_gate(true);
  at(t0_ + 50'000'000 + ns_of(1000));
  EXPECT_EQ(latch_read(2), 3000);
}

TEST_F(PitTest, Mode3SquareWave) {
  program(0, 3, 1000);
  EXPECT_TRUE(pit_.channel_output(0));
  at(t0_ + ns_of(499));
  EXPECT_TRUE(pit_.channel_output(0));
  at(t0_ + ns_of(501));
  EXPECT_FALSE(pit_.channel_output(0));
  at(t0_ + ns_of(1000));
  EXPECT_TRUE(pit_.channel_output(0));
  EXPECT_EQ(edges_, 1);
  at(t0_ + ns_of(2100));
  EXPECT_EQ(edges_, 2);
}

TEST_F(PitTest, Mode1And5NeedAGateTrigger) {
  program(2, 1, 50);
  at(t0_ + ns_of(100));
  EXPECT_TRUE(pit_.channel_output(2));  // not triggered yet
  pit_.set_channel2_gate(true);
  EXPECT_FALSE(pit_.channel_output(2));
  at(t0_ + ns_of(149));
  EXPECT_FALSE(pit_.channel_output(2));
  at(t0_ + ns_of(151));
  EXPECT_TRUE(pit_.channel_output(2));
}

TEST_F(PitTest, Mode4StrobePulse) {
  program(0, 4, 10);
  EXPECT_TRUE(pit_.channel_output(0));
  at(t0_ + ns_of(10));
  EXPECT_FALSE(pit_.channel_output(0));
  at(t0_ + ns_of(11));
  EXPECT_TRUE(pit_.channel_output(0));
  EXPECT_EQ(edges_, 1);
}

TEST_F(PitTest, BcdAndSingleByteAccess) {
  pit_.write_port(Pit::kControl, 0x35);  // channel 0, lo/hi, mode 2, BCD
  pit_.write_port(Pit::kChannel0, 0x00);
  pit_.write_port(Pit::kChannel0, 0x10);  // 1000 decimal
  at(t0_ + ns_of(1));
  EXPECT_EQ(latch_read(0), 0x0999);
  pit_.write_port(Pit::kControl, 0x14);  // lobyte only, mode 2
  pit_.write_port(Pit::kChannel0, 200);
  at(clock_.now_ns() + ns_of(50));
  pit_.write_port(Pit::kControl, 0x00);
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), 150);
  pit_.write_port(Pit::kControl, 0x24);  // hibyte only: count 0x0200
  pit_.write_port(Pit::kChannel0, 0x02);
  EXPECT_EQ(pit_.read_port(Pit::kChannel0), 0x02);
}

TEST_F(PitTest, ZeroCountMeans65536) {
  program(0, 2, 0);
  at(t0_ + ns_of(65535));
  EXPECT_EQ(edges_, 0);
  at(t0_ + ns_of(65536));
  EXPECT_EQ(edges_, 1);
}

TEST_F(PitTest, SaveRestoreKeepsThePhase) {
  program(0, 2, 1000);
  at(t0_ + ns_of(250));
  const Pit::State s = pit_.save();
  EXPECT_EQ(s.channels[0].elapsed_ticks, 250u);
  ManualClock other_clock(77'000'000);
  PlatformTimers other_timers(other_clock);
  Pit other(other_timers);
  int other_edges = 0;
  other.set_irq0_callback([&] { ++other_edges; });
  other.restore(s);
  EXPECT_EQ(other.read_port(Pit::kChannel0), 750 & 0xff);
  EXPECT_EQ(other.read_port(Pit::kChannel0), 750 >> 8);
  other_clock.set(77'000'000 + ns_of(750));
  other_timers.run_due();
  EXPECT_EQ(other_edges, 1);
}

TEST_F(PitTest, HostileWritesAreHarmless) {
  for (unsigned v = 0; v < 256; ++v) {
    pit_.write_port(Pit::kControl, static_cast<uint8_t>(v));
    pit_.write_port(Pit::kChannel0, static_cast<uint8_t>(v));
    pit_.write_port(Pit::kChannel2, static_cast<uint8_t>(~v));
    (void)pit_.read_port(Pit::kChannel0);
    (void)pit_.read_port(Pit::kChannel1);
    at(clock_.now_ns() + 977);
  }
  EXPECT_EQ(pit_.read_port(0x44), 0xff);
  EXPECT_EQ(pit_.read_port(Pit::kControl), 0xff);
}

}  // namespace
}  // namespace hostvisor::emu
