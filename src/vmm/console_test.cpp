#include "vmm/console.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "devices/legacy/serial_8250.h"
#include "vmm/event_loop.h"

namespace hostvisor {
namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(ConsoleEscape, PassesOrdinaryInputThrough) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("ls -l\r"), out), ConsoleEscape::Command::kNone);
  EXPECT_EQ(out, bytes("ls -l\r"));
}

TEST(ConsoleEscape, CtrlAXQuitsAndDropsTheRest) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("ab\x01xcd"), out), ConsoleEscape::Command::kQuit);
  EXPECT_EQ(out, bytes("ab"));
}

TEST(ConsoleEscape, EscapeSplitAcrossReads) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("a\x01"), out), ConsoleEscape::Command::kNone);
  EXPECT_EQ(escape.feed(bytes("x"), out), ConsoleEscape::Command::kQuit);
  EXPECT_EQ(out, bytes("a"));
}

TEST(ConsoleEscape, DoubleCtrlASendsOneAndHelpIsACommand) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("\x01\x01z\x01h"), out), ConsoleEscape::Command::kHelp);
  EXPECT_EQ(out, bytes("\x01z"));
  EXPECT_NE(std::string(ConsoleEscape::help_text()).find("Ctrl-A x"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

// A guest draining the UART slowly still gets every byte of a large paste,
// in order, and Ctrl-A x reaches the quit callback.
TEST(SerialConsole, DeliversLargeInputInOrderWithBackpressureAndQuits) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  Serial8250 uart([](std::span<const uint8_t>) {}, IrqLine());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::atomic<bool> quit{false};
  auto console = SerialConsole::attach(**loop, uart, fds[0], STDERR_FILENO, [&] { quit = true; });
  ASSERT_TRUE(console.ok()) << console.error().message();
  (*loop)->start();

  std::string sent;
  for (int i = 0; i < 20000; ++i) sent.push_back(static_cast<char>('a' + i % 26));
  std::thread writer([&] {
    const std::string& data = sent;
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fds[1], data.data() + done, data.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
  });
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (received.size() < sent.size() && std::chrono::steady_clock::now() < deadline) {
    uint8_t lsr = 0, byte = 0;
    uart.read(5, std::span(&lsr, 1));
    if (lsr & 0x01) {
      uart.read(0, std::span(&byte, 1));
      received.push_back(static_cast<char>(byte));
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  writer.join();
  ASSERT_EQ(::write(fds[1], "\x01x", 2), 2);
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent) << "input reordered or corrupted";
  for (int i = 0; i < 3000 && !quit; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(quit);
  (*loop)->stop();
  console->reset();
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace hostvisor
