// Stands in for the terminal when there is none: when hostvisor's stdin and
// stdout are both pipes or files (a script or a test drives the guest's
// console), nothing answers the queries the guest's programs send their
// terminal. busybox ash's line editor asks for the cursor position (DSR,
// "ESC [ 6 n") after every prompt and, never answered, sleeps 20 ms at
// every Enter before it runs the line (so a late answer is not echoed), the
// larger part of a shell's answer time on the software CPU. A real terminal
// answers at once with "ESC [ row ; col R"; this does the same, with the
// column it follows in the guest's output on an 80-column screen. It
// answers nothing else and, with a terminal on either side, is not used.
//
// The row is always the bottom one (24), where a terminal's cursor stays
// once output has scrolled: a line editor uses only the column, and there
// is no screen to be right about. Counting rows from the top instead is
// what made restored clones lose typed keys: a restored run sees none of
// the output before the snapshot, so its first prompt was answered
// "ESC [ 1 ; 5 R", and busybox's key reader takes "ESC [ 1 ; 5" for the
// start of Ctrl-Right ("ESC [ 1 ; 5 C"), reads the 'R' while matching it,
// and then recognises a cursor report only when its 'R' is the byte just
// read: it reads on, swallowing up to ten keys typed after the answer, and
// drops them all (libbb/read_key.c; "ESC [ 1 ; 3 R" fares the same, as
// Alt-Right). A report on any row but the first is read correctly.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor {

// The scanner alone: follows the cursor's column through output and collects
// the answers owed (single-threaded; TerminalStandIn serialises it).
class CursorPositionReports {
 public:
  static constexpr unsigned kColumns = 80, kRows = 24;

  // Scans `output` (a query may be split across calls); appends to
  // `answers` one "ESC [ 24 ; col R" per complete query.
  void scan(std::span<const uint8_t> output, std::string& answers);

 private:
  void printable();

  enum class Escape { kNone, kEsc, kCsi };
  Escape escape_ = Escape::kNone;
  std::string params_;  // of the CSI sequence being read
  unsigned column_ = 1;
};

// The answers' way to the console input, across threads: guest output is
// scanned on the vCPU and device threads that write it; the console (on the
// event loop) takes the answers when fd() is readable.
class TerminalStandIn {
 public:
  static Result<std::unique_ptr<TerminalStandIn>> create();
  // Whether hostvisor needs one: neither stdin nor stdout is a terminal.
  static bool needed();

  void observe(std::span<const uint8_t> output);
  int fd() const { return ready_.fd(); }
  // The answers owed so far, oldest first; clears fd().
  std::string take_answers();

 private:
  explicit TerminalStandIn(EventFd ready) : ready_(std::move(ready)) {}

  static constexpr size_t kMaxPendingAnswers = 4096;

  EventFd ready_;
  std::mutex mutex_;
  CursorPositionReports reports_;
  std::string answers_;
};

}  // namespace hostvisor
