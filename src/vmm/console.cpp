#include "vmm/console.h"

#include <unistd.h>

namespace hostvisor {

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  if (!::isatty(fd) || ::tcgetattr(fd, &saved_) != 0) return;
  termios raw = saved_;
  ::cfmakeraw(&raw);
  // Keep output post-processing off too: the guest sends its own CR LF.
  if (::tcsetattr(fd, TCSANOW, &raw) == 0) active_ = true;
}

RawTerminal::~RawTerminal() {
  if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
}

ConsoleEscape::Command ConsoleEscape::feed(std::span<const uint8_t> input, std::vector<uint8_t>& to_guest) {
  Command command = Command::kNone;
  for (uint8_t byte : input) {
    if (escape_pending_) {
      escape_pending_ = false;
      switch (byte) {
        case 'x':
        case 'X': return Command::kQuit;
        case 'h':
        case 'H':
        case '?': command = Command::kHelp; break;
        case kEscapeKey: to_guest.push_back(kEscapeKey); break;
        default: break;  // unknown escapes are swallowed, as in QEMU
      }
      continue;
    }
    if (byte == kEscapeKey) {
      escape_pending_ = true;
      continue;
    }
    to_guest.push_back(byte);
  }
  return command;
}

const char* ConsoleEscape::help_text() {
  return "\r\nhostvisor console keys:\r\n"
         "  Ctrl-A x         quit hostvisor\r\n"
         "  Ctrl-A Ctrl-A    send Ctrl-A to the guest\r\n"
         "  Ctrl-A h         this help\r\n";
}

}  // namespace hostvisor
