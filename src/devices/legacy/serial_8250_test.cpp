#include "devices/legacy/serial_8250.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "devices/testing/state_bytes.h"
#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

using testing::RecordingInterruptController;
using U = Serial8250;

constexpr uint32_t kGsi = 4;

class Serial8250Test : public ::testing::Test {
 protected:
  Serial8250Test()
      : uart_([this](std::span<const uint8_t> bytes) { output_.insert(output_.end(), bytes.begin(), bytes.end()); },
              IrqLine(&irq_, kGsi)) {}

  uint8_t in(uint8_t reg) {
    uint8_t v = 0;
    uart_.read(reg, std::span(&v, 1));
    return v;
  }
  void out(uint8_t reg, uint8_t value) { uart_.write(reg, std::span(&value, 1)); }
  size_t feed(const std::string& s) {
    return uart_.enqueue_input(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }
  std::string drain() {
    std::string s;
    while (in(U::kLsr)&U::kLsrDataReady) s.push_back(static_cast<char>(in(U::kRbrThrDll)));
    return s;
  }

  RecordingInterruptController irq_;
  std::vector<uint8_t> output_;
  Serial8250 uart_;
};

TEST_F(Serial8250Test, PowerOnRegisterValues) {
  EXPECT_EQ(in(U::kIerDlm), 0);
  EXPECT_EQ(in(U::kIirFcr), U::kIirNone);
  EXPECT_EQ(in(U::kLcr), 0);
  EXPECT_EQ(in(U::kMcr), 0);
  EXPECT_EQ(in(U::kLsr), U::kLsrThre | U::kLsrTemt);
  EXPECT_EQ(in(U::kMsr), U::kMsrCts | U::kMsrDsr | U::kMsrDcd);
  EXPECT_EQ(in(U::kScr), 0);
  EXPECT_TRUE(irq_.calls().empty());
}

TEST_F(Serial8250Test, ScratchRegisterKeepsAnyValue) {
  for (int v : {0x00, 0x5a, 0xa5, 0xff}) {
    out(U::kScr, static_cast<uint8_t>(v));
    EXPECT_EQ(in(U::kScr), v);
  }
}

TEST_F(Serial8250Test, DivisorLatchSitsBehindDlab) {
  out(U::kIerDlm, 0x05);
  out(U::kLcr, U::kLcrDlab | 0x03);
  out(U::kRbrThrDll, 0x01);
  out(U::kIerDlm, 0x02);
  EXPECT_EQ(in(U::kRbrThrDll), 0x01);
  EXPECT_EQ(in(U::kIerDlm), 0x02);
  EXPECT_TRUE(output_.empty()) << "a divisor write must not transmit";
  out(U::kLcr, 0x03);
  EXPECT_EQ(in(U::kLcr), 0x03);
  EXPECT_EQ(in(U::kIerDlm), 0x05) << "IER is untouched by the DLM write";
  out(U::kRbrThrDll, 'x');
  EXPECT_EQ(output_, std::vector<uint8_t>{'x'});
  out(U::kLcr, U::kLcrDlab);
  EXPECT_EQ(in(U::kRbrThrDll), 0x01) << "THR write must not touch DLL";
}

TEST_F(Serial8250Test, IerKeepsOnlyItsFourBits) {
  out(U::kIerDlm, 0xff);
  EXPECT_EQ(in(U::kIerDlm), 0x0f);
}

TEST_F(Serial8250Test, TransmitIsInstantAndKeepsThrEmpty) {
  for (char c : std::string("hello")) {
    out(U::kRbrThrDll, static_cast<uint8_t>(c));
    EXPECT_EQ(in(U::kLsr) & (U::kLsrThre | U::kLsrTemt), U::kLsrThre | U::kLsrTemt);
  }
  EXPECT_EQ(std::string(output_.begin(), output_.end()), "hello");
}

TEST_F(Serial8250Test, ReceivedBytesComeOutInOrderAndSetDataReady) {
  out(U::kIirFcr, U::kFcrEnable);
  EXPECT_EQ(feed("abc"), 3u);
  EXPECT_TRUE(in(U::kLsr)&U::kLsrDataReady);
  EXPECT_EQ(in(U::kRbrThrDll), 'a');
  EXPECT_EQ(in(U::kRbrThrDll), 'b');
  EXPECT_EQ(in(U::kRbrThrDll), 'c');
  EXPECT_FALSE(in(U::kLsr)&U::kLsrDataReady);
}

TEST_F(Serial8250Test, InputLargerThanTheFifoArrivesInOrderAsTheGuestDrains) {
  out(U::kIirFcr, U::kFcrEnable);
  std::string input;
  for (int i = 0; i < 3000; ++i) input.push_back(static_cast<char>('!' + i % 90));
  EXPECT_EQ(feed(input), input.size());
  EXPECT_EQ(drain(), input);
}

TEST_F(Serial8250Test, WithoutFifoTheHolderIsOneByteButNothingIsLost) {
  EXPECT_EQ(feed("xyz"), 3u);
  EXPECT_EQ(drain(), "xyz");
  EXPECT_FALSE(in(U::kLsr)&U::kLsrOverrun);
}

TEST_F(Serial8250Test, HostInputIsBoundedAndReportsRoomAgain) {
  out(U::kIirFcr, U::kFcrEnable);
  int notified = 0;
  uart_.set_input_space_notifier([&] { ++notified; });
  const std::string big(U::kInputBufferSize + 100, 'q');
  EXPECT_EQ(feed(big), U::kFifoSize + U::kInputBufferSize);
  EXPECT_EQ(uart_.input_space(), 0u);
  EXPECT_EQ(feed("z"), 0u);
  EXPECT_EQ(notified, 0);
  EXPECT_EQ(in(U::kRbrThrDll), 'q');
  EXPECT_EQ(notified, 1);
  EXPECT_EQ(uart_.input_space(), 1u);
  EXPECT_EQ(in(U::kRbrThrDll), 'q');
  EXPECT_EQ(notified, 1) << "notify once per refusal";
  EXPECT_FALSE(in(U::kLsr)&U::kLsrOverrun) << "back-pressure, not overrun";
}

TEST_F(Serial8250Test, FifoOverrunSetsOverrunAndKeepsTheFifo) {
  out(U::kIirFcr, U::kFcrEnable);
  out(U::kMcr, U::kMcrLoop);
  for (int i = 0; i < 17; ++i) out(U::kRbrThrDll, static_cast<uint8_t>('A' + i));
  EXPECT_TRUE(output_.empty()) << "loopback must not reach the sink";
  const uint8_t lsr = in(U::kLsr);
  EXPECT_TRUE(lsr & U::kLsrOverrun);
  EXPECT_TRUE(lsr & U::kLsrDataReady);
  EXPECT_FALSE(in(U::kLsr)&U::kLsrOverrun) << "reading LSR clears OE";
  EXPECT_EQ(drain(), "ABCDEFGHIJKLMNOP");  // the 17th byte was the one lost
}

TEST_F(Serial8250Test, HoldingRegisterOverrunKeepsTheNewestByte) {
  out(U::kMcr, U::kMcrLoop);
  out(U::kRbrThrDll, '1');
  out(U::kRbrThrDll, '2');
  EXPECT_TRUE(in(U::kLsr)&U::kLsrOverrun);
  EXPECT_EQ(drain(), "2");
}

TEST_F(Serial8250Test, FifoBitsInIirFollowFcr) {
  EXPECT_EQ(in(U::kIirFcr)&U::kIirFifoEnabled, 0);
  out(U::kIirFcr, U::kFcrEnable | U::kFcrClearRx | U::kFcrClearTx | 0xc0);
  EXPECT_EQ(in(U::kIirFcr), U::kIirFifoEnabled | U::kIirNone);
  out(U::kIirFcr, 0);
  EXPECT_EQ(in(U::kIirFcr), U::kIirNone);
}

TEST_F(Serial8250Test, FcrReceiveResetEmptiesTheFifo) {
  out(U::kIirFcr, U::kFcrEnable);
  feed("abc");
  out(U::kIirFcr, U::kFcrEnable | U::kFcrClearRx);
  EXPECT_FALSE(in(U::kLsr)&U::kLsrDataReady);
  feed("d");
  EXPECT_EQ(drain(), "d");
}

TEST_F(Serial8250Test, ReceiveInterruptIsTimeoutBelowTheTriggerLevel) {
  out(U::kIirFcr, U::kFcrEnable | 0x40);  // trigger at 4 bytes
  out(U::kIerDlm, U::kIerRxData);
  feed("ab");
  EXPECT_EQ(in(U::kIirFcr), U::kIirFifoEnabled | U::kIirRxTimeout);
  feed("cd");
  EXPECT_EQ(in(U::kIirFcr), U::kIirFifoEnabled | U::kIirRxData);
  in(U::kRbrThrDll);
  EXPECT_EQ(in(U::kIirFcr), U::kIirFifoEnabled | U::kIirRxTimeout);
  drain();
  EXPECT_EQ(in(U::kIirFcr), U::kIirFifoEnabled | U::kIirNone);
}

TEST_F(Serial8250Test, InterruptPrioritiesAndClearing) {
  out(U::kIirFcr, U::kFcrEnable);
  out(U::kMcr, U::kMcrLoop);
  in(U::kMsr);  // entering loopback changed the modem lines; clear those deltas
  out(U::kIerDlm, U::kIerRxData | U::kIerThre | U::kIerLineStatus | U::kIerModemStatus);
  for (int i = 0; i < 17; ++i) out(U::kRbrThrDll, 'x');  // fills the FIFO and overruns
  out(U::kMcr, U::kMcrLoop | U::kMcrRts);                // CTS changes: modem status pending
  // Line status beats everything; reading LSR clears it.
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirLineStatus);
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirLineStatus) << "IIR reads do not clear line status";
  in(U::kLsr);
  // Then received data, until the FIFO is drained.
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirRxData);
  drain();
  // Then THR empty; reading IIR while it is the reported source clears it.
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirThre);
  // Then modem status, cleared by reading MSR.
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirModemStatus);
  EXPECT_TRUE(in(U::kMsr)&U::kMsrDeltaCts);
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirNone);
}

TEST_F(Serial8250Test, ThreInterruptIsNotClearedByAnIirReadReportingSomethingElse) {
  out(U::kIerDlm, U::kIerRxData | U::kIerThre);
  feed("a");
  EXPECT_EQ(in(U::kIirFcr), U::kIirRxData);  // THRE pending underneath
  in(U::kRbrThrDll);
  EXPECT_EQ(in(U::kIirFcr), U::kIirThre);
  EXPECT_EQ(in(U::kIirFcr), U::kIirNone);
}

TEST_F(Serial8250Test, ThreInterruptRearmsWhenEnabledAgain) {
  out(U::kIerDlm, U::kIerThre);
  EXPECT_EQ(in(U::kIirFcr), U::kIirThre) << "enabling ETBEI with THR empty raises it";
  EXPECT_EQ(in(U::kIirFcr), U::kIirNone);
  out(U::kIerDlm, U::kIerThre);
  EXPECT_EQ(in(U::kIirFcr), U::kIirNone) << "rewriting an already-set ETBEI is not an enable";
  out(U::kIerDlm, 0);
  out(U::kIerDlm, U::kIerThre);
  EXPECT_EQ(in(U::kIirFcr), U::kIirThre);
}

TEST_F(Serial8250Test, ThrWriteClearsThreAndTheEmptyThrRaisesItAgain) {
  out(U::kIerDlm, U::kIerThre);
  EXPECT_EQ(in(U::kIirFcr), U::kIirThre);
  out(U::kRbrThrDll, 'k');
  EXPECT_EQ(in(U::kIirFcr), U::kIirThre) << "the byte left at once, so THR emptied again";
  out(U::kIerDlm, 0);
  out(U::kRbrThrDll, 'l');
  out(U::kIerDlm, 0);
  EXPECT_EQ(in(U::kIirFcr), U::kIirNone);
  EXPECT_EQ(std::string(output_.begin(), output_.end()), "kl");
}

TEST_F(Serial8250Test, LoopbackMirrorsModemControlIntoModemStatus) {
  out(U::kMcr, U::kMcrLoop | U::kMcrOut2 | U::kMcrRts);
  EXPECT_EQ(in(U::kMsr)&0xf0, U::kMsrDcd | U::kMsrCts);
  out(U::kMcr, U::kMcrLoop | U::kMcrDtr | U::kMcrOut1);
  const uint8_t msr = in(U::kMsr);
  EXPECT_EQ(msr & 0xf0, U::kMsrDsr | U::kMsrRi);
  EXPECT_EQ(msr & 0x0f, U::kMsrDeltaCts | U::kMsrDeltaDsr | U::kMsrDeltaDcd);
  out(U::kMcr, U::kMcrLoop);
  EXPECT_EQ(in(U::kMsr), U::kMsrDeltaDsr | U::kMsrTrailingRi);
  out(U::kMcr, 0);
  EXPECT_EQ(in(U::kMsr)&0xf0, U::kMsrCts | U::kMsrDsr | U::kMsrDcd);
  EXPECT_EQ(in(U::kMsr)&0x0f, 0) << "MSR read clears the change bits";
}

TEST_F(Serial8250Test, LoopbackDataReturnsAndHostInputWaits) {
  out(U::kIirFcr, U::kFcrEnable);
  out(U::kMcr, U::kMcrLoop);
  feed("host");
  EXPECT_FALSE(in(U::kLsr)&U::kLsrDataReady) << "the receiver hears only the transmitter";
  out(U::kRbrThrDll, 'L');
  EXPECT_EQ(drain(), "L");
  out(U::kMcr, 0);
  EXPECT_EQ(drain(), "host");
  EXPECT_TRUE(output_.empty());
}

TEST_F(Serial8250Test, IrqLineFollowsPendingAndOut2) {
  out(U::kIerDlm, U::kIerRxData);
  feed("a");
  EXPECT_TRUE(irq_.calls().empty()) << "OUT2 clear: the PC's IRQ gate is closed";
  out(U::kMcr, U::kMcrOut2);
  EXPECT_EQ(irq_.calls(), (std::vector<std::pair<uint32_t, bool>>{{kGsi, true}}));
  in(U::kRbrThrDll);
  EXPECT_EQ(irq_.calls().back(), (std::pair<uint32_t, bool>{kGsi, false}));
  feed("b");
  EXPECT_TRUE(irq_.level(kGsi));
  out(U::kMcr, 0);
  EXPECT_FALSE(irq_.level(kGsi));
  out(U::kMcr, U::kMcrOut2);
  EXPECT_TRUE(irq_.level(kGsi));
  out(U::kIerDlm, 0);
  EXPECT_FALSE(irq_.level(kGsi));
  EXPECT_EQ(irq_.calls().size(), 6u) << "only changes reach the controller";
}

TEST_F(Serial8250Test, WideAccessesAreByteCycles) {
  const uint8_t pair[2] = {0x11, 0x22};
  uart_.write(U::kLcr, pair);  // LCR then MCR
  EXPECT_EQ(in(U::kLcr), 0x11);
  EXPECT_EQ(in(U::kMcr), 0x02);
  uint8_t regs[2] = {};
  uart_.read(U::kLcr, regs);
  EXPECT_EQ(regs[0], 0x11);
  EXPECT_EQ(regs[1], 0x02);
}

// The register-level checks Linux's 8250 driver makes while identifying the
// part (autoconfig) and starting the port; they must conclude "16550A" with
// working THRE interrupts.
TEST_F(Serial8250Test, PassesTheLinux8250ProbeChecks) {
  // IER must hold exactly what is written to its low nibble.
  out(U::kIerDlm, 0);
  EXPECT_EQ(in(U::kIerDlm)&0x0f, 0);
  out(U::kIerDlm, 0x0f);
  EXPECT_EQ(in(U::kIerDlm)&0x0f, 0x0f);
  out(U::kIerDlm, 0);
  // Loopback with RTS and OUT2 must read back CTS and DCD.
  out(U::kMcr, U::kMcrLoop | U::kMcrRts | U::kMcrOut2);
  EXPECT_EQ(in(U::kMsr)&0xf0, 0x90);
  out(U::kMcr, 0);
  // Turning the FIFO on must show both FIFO bits in IIR: a 16550A.
  out(U::kIirFcr, U::kFcrEnable);
  EXPECT_EQ(in(U::kIirFcr) >> 6, 3);
  // No enhanced-feature register behind LCR 0xbf, no 16650V2 behind 0x80.
  out(U::kLcr, 0xbf);
  EXPECT_NE(in(U::kIirFcr), 0);
  out(U::kLcr, 0x80);
  EXPECT_NE(in(U::kIirFcr), 0);
  // Not a National SuperIO: the register at offset 2 in bank 2 does not track MCR's loop bit.
  out(U::kLcr, 0);
  const uint8_t mcr = in(U::kMcr);
  out(U::kLcr, 0xe0);
  const uint8_t bank2_before = in(U::kIirFcr);
  out(U::kLcr, 0);
  out(U::kMcr, mcr ^ U::kMcrLoop);
  out(U::kLcr, 0xe0);
  const uint8_t bank2_after = in(U::kIirFcr);
  out(U::kLcr, 0);
  out(U::kMcr, mcr);
  EXPECT_EQ((bank2_before ^ bank2_after) & U::kMcrLoop, 0);
  // Not a 16750: the 64-byte FIFO bit does not show in IIR bit 5.
  out(U::kIirFcr, U::kFcrEnable | 0x20);
  EXPECT_NE(in(U::kIirFcr) >> 5, 7);
  // Not an XScale: IER bit 6 does not stick.
  out(U::kIerDlm, 0x40);
  EXPECT_EQ(in(U::kIerDlm)&0x40, 0);
  out(U::kIerDlm, 0);
  // Start-up: enabling the THRE interrupt must raise it (no UART_BUG_TXEN),
  // and so must disabling and enabling it again (no UART_BUG_THRE).
  out(U::kIirFcr, U::kFcrEnable | U::kFcrClearRx | U::kFcrClearTx | 0x80);
  out(U::kIerDlm, U::kIerThre);
  EXPECT_TRUE(in(U::kLsr)&U::kLsrTemt);
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirThre);
  out(U::kIerDlm, 0);
  out(U::kIerDlm, U::kIerThre);
  EXPECT_EQ(in(U::kIirFcr)&0x0f, U::kIirThre);
  out(U::kIerDlm, 0);
}

TEST_F(Serial8250Test, CallbacksRunOutsideTheDeviceLock) {
  // Both callbacks re-enter the device; holding its lock around them would deadlock.
  std::vector<uint8_t> lsr_seen;
  Serial8250* self = nullptr;
  Serial8250 uart(
      [&](std::span<const uint8_t>) {
        uint8_t lsr = 0;
        self->read(U::kLsr, std::span(&lsr, 1));
        lsr_seen.push_back(lsr);
      },
      IrqLine());
  self = &uart;
  size_t space_seen = 0;
  uart.set_input_space_notifier([&] { space_seen = uart.input_space(); });
  const uint8_t c = 'c';
  uart.write(U::kRbrThrDll, std::span(&c, 1));
  EXPECT_EQ(lsr_seen.size(), 1u);
  const std::vector<uint8_t> big(U::kInputBufferSize + 10, 'b');
  EXPECT_EQ(uart.enqueue_input(big), U::kInputBufferSize + 1);  // one goes to the holding register
  uint8_t v = 0;
  uart.read(U::kRbrThrDll, std::span(&v, 1));
  EXPECT_EQ(space_seen, 1u);
}

TEST(Serial8250Threads, ConcurrentTransmitInputAndReadsKeepOrder) {
  constexpr int kBytes = 20000;
  std::vector<uint8_t> sent;
  Serial8250 uart([&sent](std::span<const uint8_t> bytes) { sent.insert(sent.end(), bytes.begin(), bytes.end()); },
                  IrqLine());
  const uint8_t fifo_on = U::kFcrEnable;
  uart.write(U::kIirFcr, std::span(&fifo_on, 1));
  std::atomic<bool> go{false};
  std::thread transmitter([&] {
    while (!go) std::this_thread::yield();
    for (int i = 0; i < kBytes; ++i) {
      const uint8_t b = static_cast<uint8_t>(i * 7);
      uart.write(U::kRbrThrDll, std::span(&b, 1));
    }
  });
  std::thread host([&] {
    while (!go) std::this_thread::yield();
    for (int i = 0; i < kBytes;) {
      const uint8_t b = static_cast<uint8_t>(i * 13);
      if (uart.enqueue_input(std::span(&b, 1)) == 1)
        ++i;
      else
        std::this_thread::yield();
    }
  });
  go = true;
  std::vector<uint8_t> received;
  while (received.size() < kBytes) {
    uint8_t lsr = 0;
    uart.read(U::kLsr, std::span(&lsr, 1));
    if (lsr & U::kLsrDataReady) {
      uint8_t b = 0;
      uart.read(U::kRbrThrDll, std::span(&b, 1));
      received.push_back(b);
    }
  }
  transmitter.join();
  host.join();
  ASSERT_EQ(sent.size(), static_cast<size_t>(kBytes));
  for (int i = 0; i < kBytes; ++i) {
    ASSERT_EQ(sent[i], static_cast<uint8_t>(i * 7)) << "transmit order at " << i;
    ASSERT_EQ(received[i], static_cast<uint8_t>(i * 13)) << "receive order at " << i;
  }
}

TEST_F(Serial8250Test, SaveRestoreRoundTrip) {
  out(U::kIirFcr, U::kFcrEnable | 0x80);
  out(U::kLcr, U::kLcrDlab);
  out(U::kRbrThrDll, 0x03);
  out(U::kLcr, 0x03);
  out(U::kIerDlm, U::kIerRxData);
  out(U::kMcr, U::kMcrOut2 | U::kMcrDtr);
  out(U::kScr, 0x77);
  std::string input(40, 'r');
  input[0] = 'F';
  feed(input);
  const Serial8250::State state = testing::through_state_bytes<Serial8250>(uart_.save());
  EXPECT_EQ(state.rx_fifo.size(), U::kFifoSize);
  EXPECT_EQ(state.input_buffer.size(), 40u - U::kFifoSize);

  RecordingInterruptController irq2;
  Serial8250 copy([](std::span<const uint8_t>) {}, IrqLine(&irq2, kGsi));
  ASSERT_TRUE(copy.restore(state).ok());
  EXPECT_TRUE(irq2.level(kGsi)) << "restore re-drives the interrupt line";
  auto rd = [&copy](uint8_t reg) {
    uint8_t v = 0;
    copy.read(reg, std::span(&v, 1));
    return v;
  };
  EXPECT_EQ(rd(U::kScr), 0x77);
  EXPECT_EQ(rd(U::kLcr), 0x03);
  EXPECT_EQ(rd(U::kMcr), U::kMcrOut2 | U::kMcrDtr);
  EXPECT_EQ(rd(U::kIirFcr), U::kIirFifoEnabled | U::kIirRxData);
  std::string got;
  while (rd(U::kLsr) & U::kLsrDataReady) got.push_back(static_cast<char>(rd(U::kRbrThrDll)));
  EXPECT_EQ(got, input);
}

TEST_F(Serial8250Test, RestoreRejectsImpossibleState) {
  Serial8250::State state = uart_.save();
  state.rx_fifo.assign(2, 0);  // two bytes with the FIFO off
  auto r = uart_.restore(state);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  state = uart_.save();
  state.input_buffer.assign(U::kInputBufferSize + 1, 0);
  EXPECT_FALSE(uart_.restore(state).ok());
  state = uart_.save();
  state.ier = 0xf0;
  EXPECT_FALSE(uart_.restore(state).ok());
}

}  // namespace
}  // namespace hostvisor
