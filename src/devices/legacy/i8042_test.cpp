#include "devices/legacy/i8042.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "devices/bus/bus.h"
#include "devices/legacy/port_61.h"
#include "devices/testing/recording_system_control.h"
#include "devices/testing/state_bytes.h"
#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

using testing::RecordingInterruptController;
using testing::RecordingSystemControl;
using K = I8042;
using Calls = std::vector<std::pair<uint32_t, bool>>;

class I8042Test : public ::testing::Test {
 protected:
  I8042Test() : kbc_(std::make_shared<I8042>(&system_, IrqLine(&irq_, 1), IrqLine(&irq_, 12))) {}

  uint8_t status() {
    uint8_t v = 0;
    kbc_->read(K::kCommandOffset, std::span(&v, 1));
    return v;
  }
  uint8_t data() {
    uint8_t v = 0;
    kbc_->read(K::kDataOffset, std::span(&v, 1));
    return v;
  }
  void command(uint8_t c) { kbc_->write(K::kCommandOffset, std::span(&c, 1)); }
  void send(uint8_t d) { kbc_->write(K::kDataOffset, std::span(&d, 1)); }
  // Reads every byte waiting in the output buffer.
  std::vector<uint8_t> drain() {
    std::vector<uint8_t> out;
    while (status() & K::kStatusOutputFull) out.push_back(data());
    return out;
  }

  RecordingInterruptController irq_;
  RecordingSystemControl system_;
  std::shared_ptr<I8042> kbc_;
};

TEST_F(I8042Test, IdleStatus) {
  EXPECT_EQ(status() & (K::kStatusOutputFull | K::kStatusInputFull), 0);
  EXPECT_TRUE(status() & K::kStatusSystem);
}

TEST_F(I8042Test, SelfTestAnswers55) {
  command(K::kCmdSelfTest);
  EXPECT_TRUE(status() & K::kStatusOutputFull);
  EXPECT_TRUE(status() & K::kStatusLastWasCommand);
  EXPECT_FALSE(status() & K::kStatusAuxData);
  EXPECT_EQ(data(), K::kSelfTestPassed);
  EXPECT_FALSE(status() & K::kStatusOutputFull);
}

TEST_F(I8042Test, InterfaceTestsPass) {
  command(K::kCmdTestKeyboard);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0x00});
  command(K::kCmdTestAux);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0x00});
}

TEST_F(I8042Test, CommandByteRoundTrip) {
  command(K::kCmdWriteRam);
  EXPECT_TRUE(status() & K::kStatusLastWasCommand);
  send(0x65);
  EXPECT_FALSE(status() & K::kStatusLastWasCommand);
  command(K::kCmdReadRam);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0x65});
  command(K::kCmdWriteRam);
  send(0xff);
  command(K::kCmdReadRam);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0x7f}) << "bit 7 is reserved";
}

TEST_F(I8042Test, PortDisableBitsShowInTheCommandByte) {
  command(K::kCmdWriteRam);
  send(0x00);
  command(K::kCmdDisableKeyboard);
  command(K::kCmdDisableAux);
  command(K::kCmdReadRam);
  EXPECT_EQ(drain(), std::vector<uint8_t>{K::kCtrKeyboardDisabled | K::kCtrAuxDisabled});
  command(K::kCmdEnableKeyboard);
  command(K::kCmdEnableAux);
  command(K::kCmdReadRam);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0x00});
}

TEST_F(I8042Test, PulseResetLineRequestsReset) {
  command(0xff);  // pulses nothing
  EXPECT_EQ(system_.resets, 0);
  command(K::kCmdPulseReset);
  EXPECT_EQ(system_.resets, 1);
}

TEST_F(I8042Test, OutputPortWriteWithResetBitClearResets) {
  command(K::kCmdReadOutputPort);
  EXPECT_EQ(drain(), std::vector<uint8_t>{K::kOutNotReset | K::kOutA20});
  command(K::kCmdWriteOutputPort);
  send(K::kOutNotReset);  // A20 off, no reset
  EXPECT_EQ(system_.resets, 0);
  command(K::kCmdReadOutputPort);
  EXPECT_EQ(drain(), std::vector<uint8_t>{K::kOutNotReset});
  command(K::kCmdWriteOutputPort);
  send(K::kOutA20);
  EXPECT_EQ(system_.resets, 1);
}

TEST_F(I8042Test, A20Commands) {
  command(K::kCmdA20Off);
  command(K::kCmdReadOutputPort);
  EXPECT_EQ(drain()[0] & K::kOutA20, 0);
  command(K::kCmdA20On);
  command(K::kCmdReadOutputPort);
  EXPECT_EQ(drain()[0] & K::kOutA20, K::kOutA20);
}

TEST_F(I8042Test, KeyboardResetAndIdentify) {
  send(0xff);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xaa}));
  send(0xf2);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xab, 0x83}));
}

TEST_F(I8042Test, KeyboardCommandsWithParameters) {
  send(0xed);  // LEDs
  EXPECT_EQ(drain(), std::vector<uint8_t>{0xfa});
  send(0x07);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0xfa});
  send(0xf0);  // scan-code set: query
  send(0x00);
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xfa, 0x02}));
  send(0xf0);
  send(0x07);  // no such set
  EXPECT_EQ(drain(), (std::vector<uint8_t>{0xfa, 0xfe}));
  send(0xee);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0xee});
  send(0x42);  // not a command
  EXPECT_EQ(drain(), std::vector<uint8_t>{0xfe});
}

TEST_F(I8042Test, KeyboardBytesWaitWhileThePortIsDisabled) {
  command(K::kCmdDisableKeyboard);
  send(0xf4);
  EXPECT_FALSE(status() & K::kStatusOutputFull);
  command(K::kCmdEnableKeyboard);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0xfa});
}

TEST_F(I8042Test, Irq1PulsesOncePerByteWhenEnabled) {
  send(0xff);  // ACK and self-test result, read one per interrupt
  EXPECT_EQ(irq_.calls(), (Calls{{1, true}}));
  EXPECT_EQ(data(), 0xfa);
  EXPECT_EQ(irq_.calls(), (Calls{{1, true}, {1, false}, {1, true}}));
  EXPECT_EQ(data(), 0xaa);
  EXPECT_EQ(irq_.calls(), (Calls{{1, true}, {1, false}, {1, true}, {1, false}}));
}

TEST_F(I8042Test, NoInterruptWhenTheCommandByteDisablesIt) {
  command(K::kCmdWriteRam);
  send(K::kCtrSystem | K::kCtrTranslate);
  irq_.clear();
  send(0xf2);
  command(K::kCmdSelfTest);
  EXPECT_EQ(drain().size(), 4u);
  EXPECT_TRUE(irq_.calls().empty());
}

TEST_F(I8042Test, AuxPortWithoutADeviceTimesOut) {
  command(K::kCmdWriteAux);
  send(0xff);
  const uint8_t s = status();
  EXPECT_TRUE(s & K::kStatusOutputFull);
  EXPECT_TRUE(s & K::kStatusAuxData);
  EXPECT_TRUE(s & K::kStatusTimeout);
  EXPECT_TRUE(irq_.level(12));
  EXPECT_FALSE(irq_.level(1));
  EXPECT_EQ(data(), 0xfe);
  EXPECT_FALSE(status() & K::kStatusTimeout);
  EXPECT_FALSE(irq_.level(12));
}

TEST_F(I8042Test, AuxLoopbackComesBackOnIrq12) {
  command(K::kCmdWriteAuxOutput);
  send(0x5a);
  EXPECT_TRUE(status() & K::kStatusAuxData);
  EXPECT_FALSE(status() & K::kStatusTimeout);
  EXPECT_TRUE(irq_.level(12));
  EXPECT_EQ(data(), 0x5a);
  command(K::kCmdWriteKeyboardOutput);
  send(0x1c);
  EXPECT_FALSE(status() & K::kStatusAuxData);
  EXPECT_TRUE(irq_.level(1));
  EXPECT_EQ(data(), 0x1c);
}

TEST_F(I8042Test, QueuesAreBounded) {
  for (int i = 0; i < 100; ++i) send(0xee);
  EXPECT_EQ(drain().size(), K::kQueueLimit + 1) << "the output buffer plus a full queue";
}

// The sequence Linux's i8042 and atkbd drivers go through at boot, at the
// register level: find the controller, test it, find an aux port with a
// working IRQ 12, then identify a keyboard on IRQ 1.
TEST_F(I8042Test, PassesTheLinuxProbeSequence) {
  drain();  // flush
  command(K::kCmdReadRam);
  const uint8_t ctr = drain().at(0);
  command(K::kCmdSelfTest);
  EXPECT_EQ(drain(), std::vector<uint8_t>{0x55});
  // Ports off and interrupts masked while probing.
  command(K::kCmdWriteRam);
  send(static_cast<uint8_t>((ctr | K::kCtrKeyboardDisabled | K::kCtrAuxDisabled) &
                            ~(K::kCtrKeyboardIrq | K::kCtrAuxIrq)));
  // Aux loopback answers on the aux side.
  command(K::kCmdWriteAuxOutput);
  send(0x5a);
  EXPECT_TRUE(status() & K::kStatusAuxData);
  EXPECT_EQ(data(), 0x5a);
  // The aux enable/disable bits must track the commands.
  command(K::kCmdDisableAux);
  command(K::kCmdReadRam);
  EXPECT_TRUE(drain().at(0) & K::kCtrAuxDisabled);
  command(K::kCmdEnableAux);
  command(K::kCmdReadRam);
  EXPECT_FALSE(drain().at(0) & K::kCtrAuxDisabled);
  // IRQ 12 must be delivered for aux data once enabled.
  command(K::kCmdReadRam);
  const uint8_t now = drain().at(0);
  command(K::kCmdWriteRam);
  send(static_cast<uint8_t>(now | K::kCtrAuxIrq));
  irq_.clear();
  command(K::kCmdWriteAuxOutput);
  send(0xa5);
  EXPECT_EQ(irq_.calls(), (Calls{{12, true}}));
  EXPECT_EQ(data(), 0xa5);
  // Keyboard port: enable it with its interrupt and identify the keyboard.
  command(K::kCmdWriteRam);
  send(K::kCtrKeyboardIrq | K::kCtrAuxIrq | K::kCtrSystem | K::kCtrTranslate);
  irq_.clear();
  send(0xf2);
  std::vector<uint8_t> id;
  while (irq_.level(1)) id.push_back(data());  // one byte per interrupt, as the driver reads them
  EXPECT_EQ(id, (std::vector<uint8_t>{0xfa, 0xab, 0x83}));
  // Mouse probe: nothing on the aux port, reported at once.
  command(K::kCmdWriteAux);
  send(0xf2);
  EXPECT_TRUE(status() & K::kStatusTimeout);
  EXPECT_EQ(data(), 0xfe);
}

TEST_F(I8042Test, PortsMapAroundPort61OnTheBus) {
  Bus bus("pio", 0xffff);
  ASSERT_TRUE(bus.insert(kbc_, K::kDataPort, 1).ok());
  ASSERT_TRUE(bus.insert(std::make_shared<SystemControlPortB>(), SystemControlPortB::kPort, 1).ok());
  ASSERT_TRUE(bus.insert(kbc_->command_port(), K::kCommandPort, 1).ok());
  const uint8_t self_test = K::kCmdSelfTest;
  ASSERT_TRUE(bus.write(K::kCommandPort, std::span(&self_test, 1)));
  uint8_t v = 0;
  ASSERT_TRUE(bus.read(K::kCommandPort, std::span(&v, 1)));
  EXPECT_TRUE(v & K::kStatusOutputFull);
  ASSERT_TRUE(bus.read(K::kDataPort, std::span(&v, 1)));
  EXPECT_EQ(v, K::kSelfTestPassed);
}

TEST_F(I8042Test, SaveRestoreRoundTrip) {
  command(K::kCmdWriteRam);
  send(0x47);
  send(0xf2);
  EXPECT_EQ(data(), 0xfa);
  const I8042::State state = testing::through_state_bytes<I8042>(kbc_->save());
  RecordingInterruptController irq2;
  auto copy = std::make_shared<I8042>(nullptr, IrqLine(&irq2, 1), IrqLine(&irq2, 12));
  ASSERT_TRUE(copy->restore(state).ok());
  EXPECT_TRUE(irq2.level(1));
  uint8_t v = 0;
  copy->read(K::kDataOffset, std::span(&v, 1));
  EXPECT_EQ(v, 0xab);
  copy->read(K::kDataOffset, std::span(&v, 1));
  EXPECT_EQ(v, 0x83);
  I8042::State bad = state;
  bad.aux_queue.resize(K::kQueueLimit + 1);
  EXPECT_FALSE(copy->restore(bad).ok());
}

}  // namespace
}  // namespace hostvisor
