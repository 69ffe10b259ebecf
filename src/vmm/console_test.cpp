#include "vmm/console.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "devices/legacy/serial_8250.h"
#include "devices/virtio/console/virtio_console.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "vmm/event_loop.h"
#include "vmm/terminal_stand_in.h"

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

TEST(ConsoleEscape, CtrlAPIsThePauseKeyAndListedInTheHelp) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("ab\x01p"), out), ConsoleEscape::Command::kPause);
  EXPECT_EQ(escape.feed(bytes("\x01P"), out), ConsoleEscape::Command::kPause);
  EXPECT_EQ(out, bytes("ab"));
  EXPECT_NE(std::string(ConsoleEscape::help_text()).find("Ctrl-A p"), std::string::npos);
}

TEST(ConsoleEscape, CtrlASSnapshotsAndCtrlAShiftSSnapshotsAndQuits) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("ls\x01s"), out), ConsoleEscape::Command::kSnapshot);
  // After Ctrl-A S nothing more goes to the guest: the run ends.
  EXPECT_EQ(escape.feed(bytes("\x01Sxyz"), out), ConsoleEscape::Command::kSnapshotAndQuit);
  EXPECT_EQ(out, bytes("ls"));
  const std::string help = ConsoleEscape::help_text();
  EXPECT_NE(help.find("Ctrl-A s"), std::string::npos);
  EXPECT_NE(help.find("Ctrl-A S"), std::string::npos);
}

TEST(ConsoleEscape, CtrlABIsTheBalloonKeyAndListedInTheHelp) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("ab\x01"
                              "b"),
                        out),
            ConsoleEscape::Command::kBalloon);
  EXPECT_EQ(out, bytes("ab"));
  EXPECT_NE(std::string(ConsoleEscape::help_text()).find("Ctrl-A b"), std::string::npos);
}

// Ctrl-A b asks, reads the answer line from the terminal (echoed, edited
// with Backspace) without sending it to the guest, and shows the result;
// Esc cancels a second question; typing then goes to the guest again.
TEST(TerminalConsole, CtrlABReadsASizeLineThatTheGuestNeverSees) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  std::string to_guest;
  Serial8250 uart([](std::span<const uint8_t>) {}, IrqLine());
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe2(out, O_NONBLOCK), 0);
  auto input = serial_console_input(uart);
  ASSERT_TRUE(input.ok());
  std::vector<std::string> answers;
  auto console = TerminalConsole::attach(
      **loop, std::move(*input), in[0], out[1], [] {}, {}, {},
      TerminalConsole::BalloonKey{[] { return std::string("size?"); },
                                  [&](const std::string& answer) {
                                    answers.push_back(answer);
                                    return "set " + answer;
                                  }});
  ASSERT_TRUE(console.ok()) << console.error().message();
  (*loop)->start();
  const std::string keys =
      "a\x01"
      "b20x\x7f"
      "0M\r\x01"
      "bxy\x1b"
      "z";
  ASSERT_EQ(::write(in[1], keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  std::string shown;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       shown.find("unchanged]") == std::string::npos && std::chrono::steady_clock::now() < deadline;) {
    char buffer[256];
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n > 0) shown.append(buffer, static_cast<size_t>(n));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*loop)->stop();
  console->reset();
  EXPECT_EQ(answers, std::vector<std::string>{"200M"});
  EXPECT_EQ(shown,
            "\r\n[hostvisor: size?] 20x\b \b0M\r\n[hostvisor: set 200M]\r\n"
            "\r\n[hostvisor: size?] xy\r\n[hostvisor: balloon unchanged]\r\n");
  // The guest got what was typed around the questions, and nothing of the answers.
  std::string received;
  for (int i = 0; i < 4; ++i) {
    uint8_t lsr = 0;
    uart.read(5, std::span(&lsr, 1));
    if (!(lsr & 0x01)) break;
    uint8_t byte = 0;
    uart.read(0, std::span(&byte, 1));
    received.push_back(static_cast<char>(byte));
  }
  EXPECT_EQ(received, "az");
  for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
}

// Each Ctrl-A p calls the toggle, in order with the keys around it: the
// bytes typed before it reach the guest first, and the line the toggle
// returns is shown on the terminal.
TEST(TerminalConsole, CtrlAPTogglesPauseAndShowsTheAnswer) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  Serial8250 uart([](std::span<const uint8_t>) {}, IrqLine());
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe2(out, O_NONBLOCK), 0);
  auto input = serial_console_input(uart);
  ASSERT_TRUE(input.ok());
  std::atomic<int> toggles{0};
  std::atomic<bool> typed_first{false};
  auto console = TerminalConsole::attach(
      **loop, std::move(*input), in[0], out[1], [] {},
      [&] {
        uint8_t lsr = 0;
        uart.read(5, std::span(&lsr, 1));
        if (toggles == 0) typed_first = (lsr & 0x01) != 0;
        return ++toggles % 2 == 1 ? std::string("VM paused") : std::string("VM resumed");
      });
  ASSERT_TRUE(console.ok()) << console.error().message();
  (*loop)->start();
  const std::string keys = "a\x01pb\x01p";
  ASSERT_EQ(::write(in[1], keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  std::string shown;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       shown.find("VM resumed]") == std::string::npos && std::chrono::steady_clock::now() < deadline;) {
    char buffer[256];
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n > 0) shown.append(buffer, static_cast<size_t>(n));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  (*loop)->stop();
  console->reset();
  EXPECT_EQ(toggles, 2);
  EXPECT_TRUE(typed_first) << "the key typed before Ctrl-A p did not reach the guest first";
  EXPECT_EQ(shown, "\r\n[hostvisor: VM paused]\r\n\r\n[hostvisor: VM resumed]\r\n");
  for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

using testing::VirtqueueTestDriver;

// Writes all of `text` into the console's input pipe from a thread of its
// own: the pipe fills up whenever the guest falls behind.
std::thread paste(int fd, const std::string& text) {
  return std::thread([fd, &text] {
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
  });
}

// Types Ctrl-A x, which must reach the quit callback, then takes the
// console down and closes its input pipe.
void quit_and_detach(const int (&fds)[2], const std::atomic<bool>& quit, EventLoop& loop,
                     std::unique_ptr<TerminalConsole>& console) {
  ASSERT_EQ(::write(fds[1], "\x01x", 2), 2);
  for (int i = 0; i < 3000 && !quit; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(quit);
  loop.stop();
  console.reset();
  ::close(fds[0]);
  ::close(fds[1]);
}

// A guest draining the UART slowly still gets every byte of a large paste,
// in order, and Ctrl-A x reaches the quit callback.
TEST(TerminalConsole, SerialGetsLargeInputInOrderWithBackpressureAndQuits) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  Serial8250 uart([](std::span<const uint8_t>) {}, IrqLine());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::atomic<bool> quit{false};
  auto input = serial_console_input(uart);
  ASSERT_TRUE(input.ok()) << input.error().message();
  auto console = TerminalConsole::attach(**loop, std::move(*input), fds[0], STDERR_FILENO, [&] { quit = true; });
  ASSERT_TRUE(console.ok()) << console.error().message();
  (*loop)->start();

  std::string sent;
  for (int i = 0; i < 20000; ++i) sent.push_back(static_cast<char>('a' + i % 26));
  std::thread writer = paste(fds[1], sent);
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
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent) << "input reordered or corrupted";
  quit_and_detach(fds, quit, **loop, *console);
}

// With no terminal, the stand-in's answer to the guest's cursor-position
// query comes in through the console, after what was typed before it.
TEST(TerminalConsole, StandInAnswersTheCursorQueryThroughTheGuestsInput) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  auto stand_in = TerminalStandIn::create();
  ASSERT_TRUE(stand_in.ok());
  Serial8250 uart([&](std::span<const uint8_t> out) { (*stand_in)->observe(out); }, IrqLine());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::atomic<bool> quit{false};
  auto input = serial_console_input(uart);
  ASSERT_TRUE(input.ok()) << input.error().message();
  auto console = TerminalConsole::attach(
      **loop, std::move(*input), fds[0], STDERR_FILENO, [&] { quit = true; }, {}, {}, {}, stand_in->get());
  ASSERT_TRUE(console.ok()) << console.error().message();
  (*loop)->start();
  ASSERT_EQ(::write(fds[1], "ls", 2), 2);
  auto data_ready = [&] {
    uint8_t lsr = 0;
    uart.read(5, std::span(&lsr, 1));
    return (lsr & 0x01) != 0;
  };
  for (int i = 0; i < 10000 && !data_ready(); ++i) std::this_thread::sleep_for(std::chrono::microseconds(100));
  ASSERT_TRUE(data_ready()) << "the typed keys did not reach the UART";
  // The guest's shell prints its prompt and asks, one byte at a time through THR.
  for (char c : std::string("/ # \x1b[6n")) {
    const uint8_t byte = static_cast<uint8_t>(c);
    uart.write(0, std::span(&byte, 1));
  }
  const std::string expected = "ls\x1b[24;5R";
  std::string received;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       received.size() < expected.size() && std::chrono::steady_clock::now() < deadline;) {
    uint8_t byte = 0;
    if (data_ready()) {
      uart.read(0, std::span(&byte, 1));
      received.push_back(static_cast<char>(byte));
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  EXPECT_EQ(received, expected);
  quit_and_detach(fds, quit, **loop, *console);
}

// The same paste through the virtio console's receive queue: a guest that
// posts one small receive buffer at a time, and a device buffer much smaller
// than the paste, so the terminal must wait for the guest again and again.
TEST(TerminalConsole, VirtioConsoleGetsLargeInputInOrderAsTheGuestPostsBuffers) {
  constexpr uint16_t kQueueSize = 8;
  constexpr uint64_t kRxRing = 0x1000, kTxRing = 0x4000, kRxBuffer = 0x10000;
  constexpr uint32_t kBufferSize = 61;  // odd, so chunks never line up with the writes
  auto memory = GuestMemory::create({{GuestAddress(0), 1 << 20}});
  ASSERT_TRUE(memory.ok());
  auto device = VirtioConsole::create([](std::span<const uint8_t>) {}, /*input_capacity=*/100);
  ASSERT_TRUE(device.ok());
  VirtqueueTestDriver rx(*memory, kQueueSize, kRxRing), tx(*memory, kQueueSize, kTxRing);
  struct CountingInterrupt : VirtioInterrupt {
    void signal_used(uint16_t) override { ++used; }
    void signal_config_change() override {}
    void signal_needs_reset(const Error&) override { failed = true; }
    std::atomic<int> used{0};
    std::atomic<bool> failed{false};
  } interrupt;
  const uint64_t features = (*device)->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
  Virtqueue queues[2] = {std::move(Virtqueue::create(*memory, rx.layout(), features)).value(),
                         std::move(Virtqueue::create(*memory, tx.layout(), features)).value()};
  bool enabled[2] = {true, true};
  ASSERT_TRUE((*device)->activate(VirtioActivation{&*memory, features, queues, enabled, &interrupt}).ok());

  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::atomic<bool> quit{false};
  auto console =
      TerminalConsole::attach(**loop, virtio_console_input(*device), fds[0], STDERR_FILENO, [&] { quit = true; });
  ASSERT_TRUE(console.ok()) << console.error().message();
  (*loop)->start();

  std::string sent;
  for (int i = 0; i < 5000; ++i) sent.push_back(static_cast<char>('a' + i % 26));
  std::thread writer = paste(fds[1], sent);
  // The guest: one receive buffer in flight; read it back once it is used.
  std::string received;
  uint16_t posted = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (received.size() < sent.size() && std::chrono::steady_clock::now() < deadline && !interrupt.failed) {
    if (rx.used_idx() == posted) {
      if (posted > 0) {
        auto used = rx.used(static_cast<uint16_t>(posted - 1));
        std::string chunk(used.len, '\0');
        ASSERT_TRUE(
            memory->read(GuestAddress(kRxBuffer), std::span(reinterpret_cast<uint8_t*>(chunk.data()), used.len)).ok());
        received += chunk;
      }
      rx.set_used_event(posted);
      rx.add_chain(static_cast<uint16_t>(posted % kQueueSize), {{kRxBuffer, kBufferSize, true}});
      ++posted;
      ASSERT_TRUE((*device)->process_queue(virtio_console::kReceiveQueue).ok());
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  writer.join();
  EXPECT_FALSE(interrupt.failed);
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent) << "input reordered or corrupted";
  EXPECT_GT(posted, sent.size() / kBufferSize) << "every buffer carries at most " << kBufferSize << " bytes";
  quit_and_detach(fds, quit, **loop, *console);
}

// The virtio console tells the guest the terminal's size: at attach and
// again on terminal_resized() (SIGWINCH). Here the terminal is a pty.
TEST(TerminalConsole, VirtioConsoleFollowsTheTerminalSize) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const int terminal = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(terminal, 0);
  winsize size{};
  size.ws_col = 132;
  size.ws_row = 43;
  ASSERT_EQ(::ioctl(terminal, TIOCSWINSZ, &size), 0);

  auto device = VirtioConsole::create([](std::span<const uint8_t>) {});
  ASSERT_TRUE(device.ok());
  auto config = [&] {
    virtio_console::Config c{};
    (*device)->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
    return std::make_pair(c.cols, c.rows);
  };
  EXPECT_EQ(config(), std::make_pair(uint16_t{80}, uint16_t{24}));  // until told

  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto console = TerminalConsole::attach(**loop, virtio_console_input(*device), fds[0], terminal, [] {});
  ASSERT_TRUE(console.ok()) << console.error().message();
  EXPECT_EQ(config(), std::make_pair(uint16_t{132}, uint16_t{43}));

  size.ws_col = 100;
  size.ws_row = 30;
  ASSERT_EQ(::ioctl(terminal, TIOCSWINSZ, &size), 0);
  (*console)->terminal_resized();
  EXPECT_EQ(config(), std::make_pair(uint16_t{100}, uint16_t{30}));

  console->reset();
  for (int fd : {fds[0], fds[1], terminal, master}) ::close(fd);
}

}  // namespace
}  // namespace hostvisor
