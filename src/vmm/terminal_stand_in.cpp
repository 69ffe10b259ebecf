#include "vmm/terminal_stand_in.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

namespace hostvisor {

void CursorPositionReports::printable() {
  // Autowrap, as a VT100 in its default mode.
  column_ = column_ < kColumns ? column_ + 1 : 1;
}

void CursorPositionReports::scan(std::span<const uint8_t> output, std::string& answers) {
  for (const uint8_t byte : output) {
    switch (escape_) {
      case Escape::kEsc:
        escape_ = byte == '[' ? Escape::kCsi : Escape::kNone;
        params_.clear();
        continue;
      case Escape::kCsi:
        if (byte >= 0x40 && byte <= 0x7e) {  // the final byte
          if (byte == 'n' && params_ == "6")
            answers += "\x1b[" + std::to_string(kRows) + ";" + std::to_string(column_) + "R";
          escape_ = Escape::kNone;
        } else if (params_.size() < 16) {
          params_ += static_cast<char>(byte);
        }
        continue;
      case Escape::kNone: break;
    }
    switch (byte) {
      case 0x1b: escape_ = Escape::kEsc; break;
      case '\r': column_ = 1; break;
      case '\b': column_ = std::max(column_ - 1, 1u); break;
      case '\t': column_ = std::min((column_ - 1) / 8 * 8 + 9, kColumns); break;
      default:
        // Control bytes move nothing; UTF-8 continuation bytes belong to
        // the character their lead byte counted.
        if (byte >= 0x20 && byte != 0x7f && (byte & 0xc0) != 0x80) printable();
    }
  }
}

Result<std::unique_ptr<TerminalStandIn>> TerminalStandIn::create() {
  EventFd ready = HV_TRY(EventFd::create(0, EFD_NONBLOCK));
  return std::unique_ptr<TerminalStandIn>(new TerminalStandIn(std::move(ready)));
}

bool TerminalStandIn::needed() { return !::isatty(STDIN_FILENO) && !::isatty(STDOUT_FILENO); }

void TerminalStandIn::observe(std::span<const uint8_t> output) {
  std::lock_guard lock(mutex_);
  std::string fresh;
  reports_.scan(output, fresh);
  if (fresh.empty()) return;
  // A guest that floods queries while the console does not take the
  // answers (it waits for the guest to read its input) gets no more than
  // fit; each answer ends in 'R' and is kept whole or not at all.
  const size_t room = kMaxPendingAnswers - std::min(answers_.size(), kMaxPendingAnswers);
  size_t end = fresh.size();
  if (end > room) {
    const size_t last = room == 0 ? std::string::npos : fresh.rfind('R', room - 1);
    end = last == std::string::npos ? 0 : last + 1;
  }
  if (end == 0) return;
  answers_.append(fresh, 0, end);
  ready_.signal();
}

std::string TerminalStandIn::take_answers() {
  ready_.consume();
  std::lock_guard lock(mutex_);
  return std::exchange(answers_, {});
}

}  // namespace hostvisor
