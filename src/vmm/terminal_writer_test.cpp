#include "vmm/terminal_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

namespace hostvisor {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::vector<uint8_t> pattern(size_t size) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>((i * 7 + i / 251) & 0xff);
  return bytes;
}

std::vector<uint8_t> read_to_end(int fd) {
  std::vector<uint8_t> all;
  uint8_t buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) return all;
    all.insert(all.end(), buffer, buffer + n);
  }
}

TEST(TerminalWriter, AReadingTerminalGetsEveryByteInOrder) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  std::vector<uint8_t> got;
  std::thread reader([&] { got = read_to_end(fds[0]); });
  const std::vector<uint8_t> sent = pattern(6 << 20);
  uint64_t dropped = 0;
  {
    TerminalWriter writer(fds[1]);
    // Pieces as devices print them: single bytes (the UART) and runs.
    size_t at = 0;
    for (size_t piece = 1; at < sent.size(); piece = piece * 3 % 40000 + 1) {
      const size_t n = std::min(piece, sent.size() - at);
      writer.write(std::span(sent).subspan(at, n));
      at += n;
      // A reader that keeps up, as a terminal does: the backlog stays short.
      if (writer.backlog() > TerminalWriter::kMaxBacklog / 2) std::this_thread::sleep_for(1ms);
    }
    dropped = writer.dropped();
  }  // drains
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);
  EXPECT_EQ(dropped, 0u);
  ASSERT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
}

TEST(TerminalWriter, ATerminalThatDoesNotReadNeverBlocksTheWriterAndHoldsABoundedBacklog) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  const std::vector<uint8_t> sent = pattern(16 << 20);
  auto writer = std::make_unique<TerminalWriter>(fds[1]);
  const auto start = Clock::now();
  for (size_t at = 0; at < sent.size(); at += 4096) writer->write(std::span(sent).subspan(at, 4096));
  const auto took = Clock::now() - start;
  // A blocking write would wait here forever: nobody reads the pipe yet.
  EXPECT_LT(took, 2s);
  EXPECT_LE(writer->backlog(), TerminalWriter::kMaxBacklog);
  const uint64_t dropped = writer->dropped();
  const size_t pipe_size = static_cast<size_t>(::fcntl(fds[0], F_GETPIPE_SZ));
  // Held: the pipe, the backlog and the chunk the thread is writing.
  EXPECT_GE(dropped, sent.size() - pipe_size - TerminalWriter::kMaxBacklog - TerminalWriter::kWriteChunk);

  // The terminal reads again: what was kept arrives, in order, as the start
  // of what was sent: once dropping, everything is dropped until the
  // terminal catches up, so no piece from later slips in.
  std::vector<uint8_t> got;
  std::thread reader([&] { got = read_to_end(fds[0]); });
  writer.reset();
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);
  ASSERT_EQ(got.size(), sent.size() - dropped);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), sent.begin()));
}

TEST(TerminalWriter, TheEndWaitsABoundedTimeForATerminalThatNeverReads) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  const std::vector<uint8_t> sent = pattern(2 << 20);
  auto writer = std::make_unique<TerminalWriter>(fds[1]);
  writer->write(sent);
  const auto start = Clock::now();
  writer.reset();  // gives up after kDrainTimeout; the writing thread is left blocked
  EXPECT_LT(Clock::now() - start, TerminalWriter::kDrainTimeout + 1s);
  // Unblocks the left-behind thread (EPIPE) before its fd goes away.
  ::signal(SIGPIPE, SIG_IGN);
  ::close(fds[0]);
  std::this_thread::sleep_for(100ms);
  ::close(fds[1]);
}

TEST(TerminalWriter, AClosedTerminalDropsOutputQuietly) {
  // hostvisor run keeps SIGPIPE's default (`hostvisor run | head` ends it);
  // here the write gets EPIPE instead.
  ::signal(SIGPIPE, SIG_IGN);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::close(fds[0]);
  TerminalWriter writer(fds[1]);
  const std::vector<uint8_t> bytes = pattern(100000);
  writer.write(bytes);  // EPIPE
  writer.write(bytes);
  EXPECT_EQ(writer.backlog(), 0u);
  ::close(fds[1]);
}

}  // namespace
}  // namespace hostvisor
