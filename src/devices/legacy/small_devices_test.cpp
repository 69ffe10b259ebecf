// DebugConsole, DebugExit, PostCode and SystemControlPortB.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "devices/bus/bus.h"
#include "devices/legacy/debug_console.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/port_61.h"
#include "devices/legacy/post_code.h"
#include "devices/testing/recording_system_control.h"

namespace hostvisor {
namespace {

using testing::RecordingSystemControl;

TEST(DebugConsole, ReadsBackTheMagicAndHandsOnTheLowByteOfEachWrite) {
  std::string log;
  DebugConsole dev([&](std::span<const uint8_t> bytes) { log.append(bytes.begin(), bytes.end()); });
  uint8_t probe = 0;
  dev.read(0, std::span(&probe, 1));
  EXPECT_EQ(probe, 0xe9);  // what SeaBIOS checks before it logs here
  const uint8_t text[] = {'o', 'k'};
  dev.write(0, std::span(text, 1));
  dev.write(0, std::span(text + 1, 1));
  const uint8_t wide[2] = {'!', 'x'};
  dev.write(0, wide);
  EXPECT_EQ(log, "ok!");
}

TEST(DebugExit, WriteRequestsExitWithShiftedStatus) {
  RecordingSystemControl system;
  DebugExit dev(&system);
  const uint8_t v = 0x10;
  dev.write(0, std::span(&v, 1));
  const uint8_t zero = 0;
  dev.write(0, std::span(&zero, 1));
  EXPECT_EQ(system.exits, (std::vector<int>{0x21, 0x01}));
}

TEST(DebugExit, WideWritesThroughTheBusUseTheLowByte) {
  RecordingSystemControl system;
  Bus bus("pio", 0xffff);
  ASSERT_TRUE(bus.insert(std::make_shared<DebugExit>(&system), DebugExit::kDefaultPort, DebugExit::kPortCount).ok());
  const uint8_t word[2] = {0x03, 0x00};
  const uint8_t dword[4] = {0x7f, 0x01, 0x00, 0x00};
  ASSERT_TRUE(bus.write(0xf4, word));
  ASSERT_TRUE(bus.write(0xf4, dword));
  const uint8_t one = 9;
  ASSERT_TRUE(bus.write(0xf5, std::span(&one, 1)));  // not the register
  EXPECT_EQ(system.exits, (std::vector<int>{0x07, 0xff}));
  uint32_t value = 0;
  ASSERT_TRUE(bus.read(0xf4, std::span(reinterpret_cast<uint8_t*>(&value), 4)));
  EXPECT_EQ(value, 0xffffffffu);
}

TEST(DebugExit, UnwiredDeviceIgnoresWrites) {
  DebugExit dev(nullptr);
  const uint8_t v = 1;
  dev.write(0, std::span(&v, 1));  // must not crash
}

TEST(PostCode, ReadsZeroAndKeepsTheLastCode) {
  PostCode dev;
  const uint8_t code = 0x3c;
  dev.write(0, std::span(&code, 1));
  uint8_t v = 0xee;
  dev.read(0, std::span(&v, 1));
  EXPECT_EQ(v, 0);
  EXPECT_EQ(dev.last_code(), 0x3c);
}

class FakeChannel2 : public TimerChannel2 {
 public:
  void set_channel2_gate(bool high) override { gate = high; }
  bool channel2_output() override { return output; }
  bool gate = false;
  bool output = false;
};

TEST(SystemControlPortB, RefreshBitTogglesOnEveryRead) {
  SystemControlPortB dev;
  uint8_t a = 0, b = 0, c = 0;
  dev.read(0, std::span(&a, 1));
  dev.read(0, std::span(&b, 1));
  dev.read(0, std::span(&c, 1));
  EXPECT_NE(a & SystemControlPortB::kRefreshToggle, b & SystemControlPortB::kRefreshToggle);
  EXPECT_EQ(a & SystemControlPortB::kRefreshToggle, c & SystemControlPortB::kRefreshToggle);
}

TEST(SystemControlPortB, WritableBitsAndTimerChannel2) {
  FakeChannel2 timer;
  SystemControlPortB dev(&timer);
  const uint8_t v = 0xff;
  dev.write(0, std::span(&v, 1));
  EXPECT_TRUE(timer.gate);
  uint8_t r = 0;
  dev.read(0, std::span(&r, 1));
  EXPECT_EQ(r & 0xef, SystemControlPortB::kWritableBits) << "only bits 0-3 are writable";
  timer.output = true;
  dev.read(0, std::span(&r, 1));
  EXPECT_TRUE(r & SystemControlPortB::kTimer2Output);
  const uint8_t off = 0;
  dev.write(0, std::span(&off, 1));
  EXPECT_FALSE(timer.gate);
}

TEST(SystemControlPortB, SaveRestore) {
  SystemControlPortB dev;
  const uint8_t v = 0x03;
  dev.write(0, std::span(&v, 1));
  SystemControlPortB copy;
  ASSERT_TRUE(copy.restore(dev.save()).ok());
  uint8_t r = 0;
  copy.read(0, std::span(&r, 1));
  EXPECT_EQ(r & SystemControlPortB::kWritableBits, 0x03);
  EXPECT_FALSE(copy.restore(SystemControlPortB::State{0x80, false}).ok());
}

}  // namespace
}  // namespace hostvisor
