// The serial console on the host terminal: stdin goes to the guest's UART,
// in raw mode when stdin is a terminal (restored on exit, whatever the exit).
// Like QEMU, Ctrl-A is an escape key: Ctrl-A x quits, Ctrl-A h lists the
// keys, Ctrl-A Ctrl-A sends a literal Ctrl-A.
#pragma once

#include <termios.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor {

class EventLoop;
class Serial8250;

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

// Host input (stdin) to the guest's UART, on the event loop. Input the UART
// cannot take yet waits here, and stdin is not read again until the guest
// has drained it (the UART's input-space notifier wakes us), so pasted text
// and keystrokes are never dropped and nothing spins.
class SerialConsole {
 public:
  static Result<std::unique_ptr<SerialConsole>> attach(EventLoop& loop, Serial8250& uart, int input_fd, int output_fd,
                                                       std::function<void()> on_quit);
  ~SerialConsole();

 private:
  SerialConsole(EventLoop& loop, Serial8250& uart, int input_fd, int output_fd, std::function<void()> on_quit,
                EventFd space)
      : loop_(loop),
        uart_(uart),
        input_fd_(input_fd),
        output_fd_(output_fd),
        on_quit_(std::move(on_quit)),
        space_(std::move(space)) {}
  void on_input();
  void on_space();
  void deliver_pending();  // pushes what fits; watches stdin again once empty

  EventLoop& loop_;
  Serial8250& uart_;
  int input_fd_, output_fd_;
  std::function<void()> on_quit_;
  EventFd space_;
  ConsoleEscape escape_;
  std::vector<uint8_t> pending_;
  bool watching_input_ = false;
  bool input_closed_ = false;
};

}  // namespace hostvisor
