#include "base/progress_line.h"

#include <unistd.h>

#include <cstdio>

#include "base/size.h"

namespace hostvisor {

ProgressLine::ProgressLine(std::string what, bool enabled) : what_(std::move(what)), enabled_(enabled) {}

ProgressLine::~ProgressLine() { finish(); }

bool ProgressLine::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

std::string ProgressLine::format(const std::string& what, uint64_t done, uint64_t total) {
  const uint64_t percent = total == 0 ? 100 : (done >= total ? 100 : done * 100 / total);
  return what + ": " + std::to_string(percent) + "% (" + format_size(done) + " of " + format_size(total) + ")";
}

void ProgressLine::update(uint64_t done, uint64_t total) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  draw(format(what_, done, total));
}

void ProgressLine::step(const std::string& text) {
  if (enabled_) draw(what_ + ": " + text);
}

void ProgressLine::draw(const std::string& text) {
  // \r back to the start, ESC[K erases what a longer earlier line left.
  std::fprintf(stderr, "\r%s\033[K", text.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::finish() {
  if (!drawn_) return;
  std::fputc('\n', stderr);
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace hostvisor
