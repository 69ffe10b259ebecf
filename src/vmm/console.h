// The guest's console on the host terminal: stdin goes to one guest device,
// the UART (ttyS0) or the virtio console's port 0 (hvc0), in raw mode when
// stdin is a terminal (restored on exit, whatever the exit). Like QEMU,
// Ctrl-A is an escape key: Ctrl-A x quits, Ctrl-A p pauses or resumes the
// VM, Ctrl-A s writes a snapshot and goes on, Ctrl-A S writes one and quits,
// Ctrl-A b asks for the balloon's size (a line typed on the host, not sent to
// the guest), Ctrl-A h lists the keys, Ctrl-A Ctrl-A sends a literal Ctrl-A.
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
class TerminalStandIn;
class VirtioConsole;

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
  enum class Command { kNone, kQuit, kHelp, kPause, kSnapshot, kSnapshotAndQuit, kBalloon };
  static constexpr uint8_t kEscapeKey = 0x01;  // Ctrl-A

  // Feeds input; bytes for the guest are appended to `to_guest`. Returns the
  // first command seen (input after a quit is dropped).
  Command feed(std::span<const uint8_t> input, std::vector<uint8_t>& to_guest);

  static const char* help_text();

 private:
  bool escape_pending_ = false;
};

// A guest device that takes the terminal's input: it accepts what fits and,
// once it refused bytes, makes space_fd() readable when it has room again.
class ConsoleInput {
 public:
  virtual ~ConsoleInput() = default;
  // Returns how many leading bytes were taken; the caller keeps the rest.
  virtual size_t enqueue_input(std::span<const uint8_t> bytes) = 0;
  virtual int space_fd() const = 0;
  // Clears space_fd() before the caller retries.
  virtual void consume_space() = 0;
  // The host terminal's size, for devices that tell the guest (a UART cannot).
  virtual void set_terminal_size(uint16_t /*cols*/, uint16_t /*rows*/) {}
};

// The 16550's receive side (its input buffer drains as the guest reads RBR).
Result<std::unique_ptr<ConsoleInput>> serial_console_input(Serial8250& uart);
// The virtio console's port 0 receive queue (it fills the receive buffers
// the guest posts; until then the bytes wait in the device's buffer).
std::unique_ptr<ConsoleInput> virtio_console_input(std::shared_ptr<VirtioConsole> console);

// Host input (stdin) to a guest console device, on the event loop. Input the
// device cannot take yet waits here, and stdin is not read again until the
// guest has drained it (the device's space_fd() wakes us), so pasted text and
// keystrokes are never dropped and nothing spins.
class TerminalConsole {
 public:
  // Ctrl-A x calls on_quit. Ctrl-A p calls on_pause_toggle, which pauses or
  // resumes the VM and returns a line saying which; the console shows it.
  using PauseToggle = std::function<std::string()>;
  // Ctrl-A s (and_quit false) and Ctrl-A S: writes a snapshot (and ends the
  // run after it) and returns the line the console shows. `stand_in`, if
  // given, answers the guest's terminal queries through this console's
  // input, after what was typed before them.
  using SnapshotKey = std::function<std::string(bool and_quit)>;
  // Ctrl-A b: the console shows prompt()'s question, reads a line from the
  // terminal (echoed; Backspace edits, Esc or Ctrl-C cancels) and shows what
  // set(line) returns. The guest sees none of it.
  struct BalloonKey {
    std::function<std::string()> prompt;
    std::function<std::string(const std::string& answer)> set;
  };
  static constexpr size_t kMaxAnswer = 32;
  static Result<std::unique_ptr<TerminalConsole>> attach(EventLoop& loop, std::unique_ptr<ConsoleInput> target,
                                                         int input_fd, int output_fd, std::function<void()> on_quit,
                                                         PauseToggle on_pause_toggle = {}, SnapshotKey on_snapshot = {},
                                                         BalloonKey on_balloon = {},
                                                         TerminalStandIn* stand_in = nullptr);
  ~TerminalConsole();

  // Passes the terminal's size (of output_fd, if it is a terminal) on to the
  // device; attach() does it once, the caller again on SIGWINCH.
  void terminal_resized();

  // Input from a console attachment of the control socket: bytes for the
  // guest as they are (no escape keys), queued behind what waits already.
  // At most kMaxRemotePending bytes wait; beyond that input is dropped (a
  // guest that reads nothing must not grow the host's memory). On the loop
  // thread. input_fd -1 at attach(): no terminal input, only this (--headless).
  static constexpr size_t kMaxRemotePending = 256 * 1024;
  void feed_remote(std::span<const uint8_t> bytes);

 private:
  TerminalConsole(EventLoop& loop, std::unique_ptr<ConsoleInput> target, int input_fd, int output_fd,
                  std::function<void()> on_quit, PauseToggle on_pause_toggle, SnapshotKey on_snapshot,
                  BalloonKey on_balloon)
      : loop_(loop),
        target_(std::move(target)),
        input_fd_(input_fd),
        output_fd_(output_fd),
        on_quit_(std::move(on_quit)),
        on_pause_toggle_(std::move(on_pause_toggle)),
        on_snapshot_(std::move(on_snapshot)),
        on_balloon_(std::move(on_balloon)) {}
  void on_input();
  // A byte of the line Ctrl-A b reads.
  void answer_byte(uint8_t byte);
  void on_space();
  void deliver_pending();        // pushes what fits; watches stdin again once empty
  void take_stand_in_answers();  // into pending_
  void on_stand_in_answers();

  EventLoop& loop_;
  std::unique_ptr<ConsoleInput> target_;
  int input_fd_, output_fd_;
  std::function<void()> on_quit_;
  PauseToggle on_pause_toggle_;
  SnapshotKey on_snapshot_;
  TerminalStandIn* stand_in_ = nullptr;
  BalloonKey on_balloon_;
  ConsoleEscape escape_;
  bool answering_ = false;  // reading Ctrl-A b's line
  std::string answer_;
  std::vector<uint8_t> pending_;
  bool watching_input_ = false;
  bool input_closed_ = false;
};

}  // namespace hostvisor
