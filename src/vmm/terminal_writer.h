// The guest's console output on its way to the host terminal (stdout).
// Devices print from a vCPU thread or from the event loop, and neither may
// wait for a terminal that does not read: a pipe whose reader stopped, a
// terminal emulator that hangs. So write() never blocks. What the terminal
// takes at once is written at once, in order; the rest waits in a backlog of
// at most kMaxBacklog bytes, which a thread of its own writes out as the
// terminal takes it; what does not fit is dropped (and everything after it
// until the terminal has caught up with the backlog), counted and reported
// on stderr (rate-limited). At the end the backlog gets kDrainTimeout to go out.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>

namespace hostvisor {

class TerminalWriter {
 public:
  static constexpr size_t kMaxBacklog = 1 << 20;
  static constexpr size_t kWriteChunk = 64 * 1024;  // the thread's write(2) size
  static constexpr std::chrono::milliseconds kDrainTimeout{2000};

  explicit TerminalWriter(int fd);  // the fd stays the caller's
  ~TerminalWriter();
  TerminalWriter(const TerminalWriter&) = delete;
  TerminalWriter& operator=(const TerminalWriter&) = delete;

  // Any thread; never waits for the terminal.
  void write(std::span<const uint8_t> bytes);

  uint64_t dropped() const;  // bytes that did not fit in the backlog
  size_t backlog() const;    // bytes waiting for the terminal

 private:
  struct Shared;
  // Shared with the thread, which outlives the writer when the terminal
  // never takes the backlog (the thread is then left blocked in write()).
  std::shared_ptr<Shared> shared_;
  std::thread thread_;
};

}  // namespace hostvisor
