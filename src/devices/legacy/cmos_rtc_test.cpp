#include "devices/legacy/cmos_rtc.h"

#include <gtest/gtest.h>

#include "devices/testing/state_bytes.h"
#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

using testing::RecordingInterruptController;
using R = CmosRtc;

constexpr int64_t kSecond = 1'000'000'000;
// Saturday 2026-11-21 20:34:56 UTC.
constexpr int64_t kStart = 1'795'293'296 * kSecond;
constexpr uint32_t kGsi = 8;

class CmosRtcTest : public ::testing::Test {
 protected:
  CmosRtcTest() : rtc_(IrqLine(&irq_, kGsi), [this] { return now_; }) {}

  uint8_t get(uint8_t index) {
    rtc_.write(0, std::span(&index, 1));
    uint8_t v = 0;
    rtc_.read(1, std::span(&v, 1));
    return v;
  }
  void set(uint8_t index, uint8_t value) {
    rtc_.write(0, std::span(&index, 1));
    rtc_.write(1, std::span(&value, 1));
  }

  int64_t now_ = kStart + 100'000'000;  // a tenth into the second
  RecordingInterruptController irq_;
  CmosRtc rtc_;
};

TEST_F(CmosRtcTest, PowerOnStatusRegisters) {
  EXPECT_EQ(get(R::kRegA), 0x26);
  EXPECT_EQ(get(R::kRegB), R::kRegB24Hour);
  EXPECT_EQ(get(R::kRegC), 0);
  EXPECT_EQ(get(R::kRegD), R::kRegDValidRam);
}

TEST_F(CmosRtcTest, BcdTimeAndDateFromTheClock) {
  EXPECT_EQ(get(R::kSeconds), 0x56);
  EXPECT_EQ(get(R::kMinutes), 0x34);
  EXPECT_EQ(get(R::kHours), 0x20);
  EXPECT_EQ(get(R::kDayOfWeek), 7);  // Saturday; Sunday is 1
  EXPECT_EQ(get(R::kDayOfMonth), 0x21);
  EXPECT_EQ(get(R::kMonth), 0x11);
  EXPECT_EQ(get(R::kYear), 0x26);
  EXPECT_EQ(get(R::kCentury), 0x20);
}

TEST_F(CmosRtcTest, BinaryMode) {
  set(R::kRegB, R::kRegB24Hour | R::kRegBBinary);
  EXPECT_EQ(get(R::kSeconds), 56);
  EXPECT_EQ(get(R::kMinutes), 34);
  EXPECT_EQ(get(R::kHours), 20);
  EXPECT_EQ(get(R::kDayOfMonth), 21);
  EXPECT_EQ(get(R::kMonth), 11);
  EXPECT_EQ(get(R::kYear), 26);
  EXPECT_EQ(get(R::kCentury), 20);
}

TEST_F(CmosRtcTest, TwelveHourMode) {
  set(R::kRegB, 0);                 // BCD, 12-hour
  EXPECT_EQ(get(R::kHours), 0x88);  // 8 PM
  set(R::kRegB, R::kRegBBinary);
  EXPECT_EQ(get(R::kHours), 0x88);
  now_ = 1'795'219'200 * kSecond;  // midnight
  EXPECT_EQ(get(R::kHours), 12);   // 12 AM
  now_ += 12 * 3600 * kSecond;     // noon
  EXPECT_EQ(get(R::kHours), 0x80 | 12);
  set(R::kRegB, 0);
  now_ += 3600 * kSecond;  // 1 PM
  EXPECT_EQ(get(R::kHours), 0x81);
}

TEST_F(CmosRtcTest, TimeFollowsTheClock) {
  now_ += 65 * kSecond;
  EXPECT_EQ(get(R::kSeconds), 0x01);
  EXPECT_EQ(get(R::kMinutes), 0x36);
}

TEST_F(CmosRtcTest, GuestSetClockKeepsItsOffset) {
  set(R::kRegB, R::kRegB24Hour | R::kRegBSet);
  set(R::kSeconds, 0x58);
  set(R::kMinutes, 0x59);
  set(R::kHours, 0x23);
  set(R::kDayOfMonth, 0x31);
  set(R::kMonth, 0x12);
  set(R::kYear, 0x99);
  set(R::kCentury, 0x19);
  set(R::kRegB, R::kRegB24Hour);
  EXPECT_EQ(get(R::kSeconds), 0x58);
  EXPECT_EQ(get(R::kYear), 0x99);
  now_ += 3 * kSecond;
  EXPECT_EQ(get(R::kSeconds), 0x01);
  EXPECT_EQ(get(R::kMinutes), 0x00);
  EXPECT_EQ(get(R::kHours), 0x00);
  EXPECT_EQ(get(R::kDayOfMonth), 0x01);
  EXPECT_EQ(get(R::kMonth), 0x01);
  EXPECT_EQ(get(R::kYear), 0x00);
  EXPECT_EQ(get(R::kCentury), 0x20);
  EXPECT_EQ(get(R::kDayOfWeek), 7);  // 2000-01-01 was a Saturday
  // The offset is part of the saved state.
  EXPECT_EQ(rtc_.save().guest_offset_ns, 946'684'798 * kSecond - kStart - 100'000'000);
}

// How Linux sets the clock: SET, divider held in reset, fields, then SET
// cleared before the divider is released.
TEST_F(CmosRtcTest, LinuxSetTimeSequence) {
  const uint8_t control = get(R::kRegB);
  set(R::kRegB, control | R::kRegBSet);
  const uint8_t freq = get(R::kRegA);
  set(R::kRegA, freq | 0x70);
  set(R::kYear, 0x27);
  set(R::kMonth, 0x03);
  set(R::kDayOfMonth, 0x15);
  set(R::kHours, 0x09);
  set(R::kMinutes, 0x08);
  set(R::kSeconds, 0x07);
  set(R::kRegB, control);
  set(R::kRegA, freq);
  now_ += 2 * kSecond;
  EXPECT_EQ(get(R::kSeconds), 0x09);
  EXPECT_EQ(get(R::kMinutes), 0x08);
  EXPECT_EQ(get(R::kHours), 0x09);
  EXPECT_EQ(get(R::kDayOfMonth), 0x15);
  EXPECT_EQ(get(R::kMonth), 0x03);
  EXPECT_EQ(get(R::kYear), 0x27);
  EXPECT_EQ(get(R::kCentury), 0x20);
}

TEST_F(CmosRtcTest, DividerResetStopsPeriodicAndUpdateFlags) {
  set(R::kRegA, 0x76);
  get(R::kRegC);
  now_ += 3 * kSecond;
  EXPECT_EQ(get(R::kRegC), 0);
  now_ = kStart + 3 * kSecond + 999'900'000;  // where UIP would be up on a running clock
  EXPECT_FALSE(get(R::kRegA) & R::kRegAUpdateInProgress);
}

TEST_F(CmosRtcTest, SingleFieldWriteOnARunningClock) {
  set(R::kMinutes, 0x10);
  EXPECT_EQ(get(R::kMinutes), 0x10);
  EXPECT_EQ(get(R::kHours), 0x20);
  now_ += kSecond;
  EXPECT_EQ(get(R::kSeconds), 0x57);
  EXPECT_EQ(get(R::kMinutes), 0x10);
}

TEST_F(CmosRtcTest, SetFreezesTheRegisters) {
  set(R::kRegB, R::kRegB24Hour | R::kRegBSet);
  now_ += 10 * kSecond;
  EXPECT_EQ(get(R::kSeconds), 0x56);
  now_ = kStart + 999'900'000;  // inside the update window, but updates are halted
  EXPECT_FALSE(get(R::kRegA) & R::kRegAUpdateInProgress);
}

TEST_F(CmosRtcTest, GarbageTimeFromTheGuestIsClampedNotFatal) {
  set(R::kRegB, R::kRegB24Hour | R::kRegBSet);
  for (uint8_t reg : {R::kSeconds, R::kMinutes, R::kHours, R::kDayOfMonth, R::kMonth, R::kYear, R::kCentury})
    set(reg, 0xff);
  set(R::kRegB, R::kRegB24Hour);
  get(R::kSeconds);  // must not crash or overflow (UBSan checks this in the fuzz build)
  now_ = INT64_MAX;
  get(R::kYear);
  rtc_.poll();
}

TEST_F(CmosRtcTest, UpdateInProgressRisesJustBeforeEachSecond) {
  now_ = kStart + 500'000'000;
  EXPECT_FALSE(get(R::kRegA) & R::kRegAUpdateInProgress);
  now_ = kStart + 999'900'000;
  EXPECT_TRUE(get(R::kRegA) & R::kRegAUpdateInProgress);
  EXPECT_EQ(get(R::kRegA) & 0x7f, 0x26);
}

TEST_F(CmosRtcTest, RegisterAKeepsWrittenBitsButNotUip) {
  set(R::kRegA, 0xaf);
  EXPECT_EQ(get(R::kRegA) & 0x7f, 0x2f);
}

TEST_F(CmosRtcTest, RegistersCAndDAreReadOnly) {
  set(R::kRegC, 0xff);
  set(R::kRegD, 0x00);
  EXPECT_EQ(get(R::kRegC), 0);
  EXPECT_EQ(get(R::kRegD), R::kRegDValidRam);
}

TEST_F(CmosRtcTest, RegisterCReadClearsTheFlagsAndTheLine) {
  set(R::kRegA, 0x20);  // no periodic rate
  set(R::kRegB, R::kRegB24Hour | R::kRegBUpdateIe);
  now_ += kSecond;
  EXPECT_EQ(get(R::kRegC), R::kRegCIrq | R::kRegCUpdate);
  EXPECT_EQ(irq_.calls(), (std::vector<std::pair<uint32_t, bool>>{{kGsi, true}, {kGsi, false}}));
  EXPECT_EQ(get(R::kRegC), 0);
}

TEST_F(CmosRtcTest, FlagsAreSetEvenWhenTheirInterruptIsOff) {
  set(R::kRegA, 0x20);
  now_ += kSecond;
  EXPECT_EQ(get(R::kRegC), R::kRegCUpdate);
  EXPECT_TRUE(irq_.calls().empty());
}

TEST_F(CmosRtcTest, PeriodicInterruptAtTheProgrammedRate) {
  set(R::kRegA, 0x26);  // 1024 Hz
  get(R::kRegC);
  now_ += 1'500'000;  // 1.5 ms crosses at least one 1/1024 s boundary
  EXPECT_TRUE(get(R::kRegC) & R::kRegCPeriodic);
  set(R::kRegB, R::kRegB24Hour | R::kRegBPeriodicIe);
  const auto next = rtc_.next_event_ns();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(*next, now_);
  EXPECT_LE(*next - now_, 976'563);  // 1/1024 s
  now_ = *next - 1;
  rtc_.poll();
  EXPECT_FALSE(irq_.level(kGsi));
  now_ = *next;
  rtc_.poll();
  EXPECT_TRUE(irq_.level(kGsi));
  EXPECT_FALSE(rtc_.next_event_ns().has_value()) << "nothing new until register C is read";
  EXPECT_EQ(get(R::kRegC), R::kRegCIrq | R::kRegCPeriodic);
  EXPECT_FALSE(irq_.level(kGsi));
}

TEST_F(CmosRtcTest, AlarmFiresWhenTheTimeMatches) {
  set(R::kRegA, 0x20);
  set(R::kSecondsAlarm, 0x58);
  set(R::kMinutesAlarm, 0x34);
  set(R::kHoursAlarm, 0xc0);  // any hour
  set(R::kRegB, R::kRegB24Hour | R::kRegBAlarmIe);
  now_ += kSecond;  // 20:34:57
  rtc_.poll();
  EXPECT_FALSE(irq_.level(kGsi));
  now_ += kSecond;  // 20:34:58
  rtc_.poll();
  EXPECT_TRUE(irq_.level(kGsi));
  EXPECT_EQ(get(R::kRegC), R::kRegCIrq | R::kRegCAlarm | R::kRegCUpdate);
}

TEST_F(CmosRtcTest, AlarmIsFoundAfterALongQuietSpell) {
  set(R::kRegA, 0x20);
  set(R::kSecondsAlarm, 0x00);
  set(R::kMinutesAlarm, 0x00);
  set(R::kHoursAlarm, 0x03);
  now_ += 40 * 24 * 3600 * kSecond;
  EXPECT_TRUE(get(R::kRegC) & R::kRegCAlarm);
}

TEST_F(CmosRtcTest, AlarmStaysQuietWhenItsTimeIsNotCrossed) {
  set(R::kRegA, 0x20);
  set(R::kSecondsAlarm, 0x00);
  set(R::kMinutesAlarm, 0x00);
  set(R::kHoursAlarm, 0x03);
  now_ += 3600 * kSecond;  // 20:34:56 -> 21:34:56
  EXPECT_EQ(get(R::kRegC), R::kRegCUpdate);
  set(R::kHoursAlarm, 0x21);  // 21:00:00 already passed
  set(R::kMinutesAlarm, 0x35);
  now_ += 3 * kSecond;  // 21:34:59
  EXPECT_EQ(get(R::kRegC), R::kRegCUpdate);
  now_ += kSecond;  // 21:35:00
  EXPECT_EQ(get(R::kRegC), R::kRegCUpdate | R::kRegCAlarm);
}

TEST_F(CmosRtcTest, IndexIgnoresTheNmiBit) {
  set(0x40, 0x9c);
  EXPECT_EQ(get(0x80 | 0x40), 0x9c);
  uint8_t index_read = 0;
  rtc_.read(0, std::span(&index_read, 1));
  EXPECT_EQ(index_read, 0xff) << "the index port is write-only";
  EXPECT_TRUE(rtc_.save().nmi_disabled);
}

TEST_F(CmosRtcTest, CmosRamHoldsBytes) {
  for (int i = 0x0e; i < 0x80; ++i) {
    if (i == R::kCentury) continue;
    set(static_cast<uint8_t>(i), static_cast<uint8_t>(i ^ 0x5a));
  }
  for (int i = 0x0e; i < 0x80; ++i) {
    if (i == R::kCentury) continue;
    EXPECT_EQ(get(static_cast<uint8_t>(i)), i ^ 0x5a) << "byte " << i;
  }
}

TEST_F(CmosRtcTest, MemorySizeBytes) {
  constexpr uint64_t kMiB = 1 << 20, kGiB = 1ull << 30;
  rtc_.set_memory_size(3 * kGiB, 5 * kGiB);
  EXPECT_EQ(get(0x15) | get(0x16) << 8, 640);
  EXPECT_EQ(get(0x17) | get(0x18) << 8, 0xffff);  // saturated
  EXPECT_EQ(get(0x34) | get(0x35) << 8, (3 * kGiB - 16 * kMiB) / (64 * 1024));
  EXPECT_EQ(get(0x5b) | get(0x5c) << 8 | get(0x5d) << 16, 5 * kGiB / (64 * 1024));
  unsigned sum = 0;
  for (int i = 0x10; i <= 0x2d; ++i) sum += get(static_cast<uint8_t>(i));
  EXPECT_EQ(get(0x2e) << 8 | get(0x2f), static_cast<int>(sum));

  rtc_.set_memory_size(8 * kMiB);
  EXPECT_EQ(get(0x17) | get(0x18) << 8, 7 * 1024);
  EXPECT_EQ(get(0x30) | get(0x31) << 8, 7 * 1024);
  EXPECT_EQ(get(0x34) | get(0x35) << 8, 0);
  EXPECT_EQ(get(0x5b) | get(0x5c) << 8 | get(0x5d) << 16, 0);
}

TEST_F(CmosRtcTest, ResetClearsEnablesAndFlagsButNotTime) {
  set(R::kRegB, R::kRegB24Hour | R::kRegBUpdateIe | R::kRegBPeriodicIe);
  now_ += kSecond;
  rtc_.poll();
  EXPECT_TRUE(irq_.level(kGsi));
  rtc_.reset();
  EXPECT_FALSE(irq_.level(kGsi));
  EXPECT_EQ(get(R::kRegB), R::kRegB24Hour);
  EXPECT_EQ(get(R::kSeconds), 0x57);
}

TEST_F(CmosRtcTest, SaveRestoreKeepsGuestTimeAndRam) {
  set(R::kRegB, R::kRegB24Hour | R::kRegBSet);
  set(R::kYear, 0x30);
  set(R::kRegB, R::kRegB24Hour);
  set(0x50, 0x42);
  const CmosRtc::State state = testing::through_state_bytes<CmosRtc>(rtc_.save());
  CmosRtc copy(IrqLine{}, [this] { return now_; });
  ASSERT_TRUE(copy.restore(state).ok());
  uint8_t index = R::kYear, v = 0;
  copy.write(0, std::span(&index, 1));
  copy.read(1, std::span(&v, 1));
  EXPECT_EQ(v, 0x30);
  index = 0x50;
  copy.write(0, std::span(&index, 1));
  copy.read(1, std::span(&v, 1));
  EXPECT_EQ(v, 0x42);
  CmosRtc::State bad = state;
  bad.index = 200;
  EXPECT_FALSE(copy.restore(bad).ok());
}

}  // namespace
}  // namespace hostvisor
