// Progress of a long operation on a terminal: one line on stderr, rewritten
// in place ("\r" and erase-to-end), and ended with a newline when done.
// When stderr is not a terminal it prints nothing, so logs and pipes get no
// carriage returns and no half lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace hostvisor {

class ProgressLine {
 public:
  // `enabled`: whether to draw at all (by default, whether stderr is a tty).
  explicit ProgressLine(std::string what, bool enabled = stderr_is_terminal());
  ~ProgressLine();  // ends the line if anything was drawn
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // "WHAT: 42% (1.2G of 3.0G)"; redrawn at most every 100 ms, and always at 100%.
  void update(uint64_t done, uint64_t total);
  // "WHAT: TEXT", e.g. the step a build is at.
  void step(const std::string& text);
  void finish();

  // The text update() draws (exposed for tests).
  static std::string format(const std::string& what, uint64_t done, uint64_t total);
  static bool stderr_is_terminal();

 private:
  void draw(const std::string& text);
  std::string what_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace hostvisor
