// The serial console on the host terminal: stdin goes to the guest's UART,
// in raw mode when stdin is a terminal (restored on exit, whatever the exit).
// Like QEMU, Ctrl-A is an escape key: Ctrl-A x quits, Ctrl-A h lists the
// keys, Ctrl-A Ctrl-A sends a literal Ctrl-A.
#pragma once

#include <termios.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace hostvisor {

// Puts a terminal into raw mode for its lifetime.
class RawTerminal {
 public:
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  bool active() const { return active_; }

 private:
  int fd_;
  bool active_ = false;
  termios saved_{};
};

// Splits host keyboard input into bytes for the guest and escape commands.
class ConsoleEscape {
 public:
  enum class Command { kNone, kQuit, kHelp };
  static constexpr uint8_t kEscapeKey = 0x01;  // Ctrl-A

  // Feeds input; bytes for the guest are appended to `to_guest`. Returns the
  // first command seen (input after a quit is dropped).
  Command feed(std::span<const uint8_t> input, std::vector<uint8_t>& to_guest);

  static const char* help_text();

 private:
  bool escape_pending_ = false;
};

}  // namespace hostvisor
