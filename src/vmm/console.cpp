#include "vmm/console.h"

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

#include "devices/legacy/serial_8250.h"
#include "devices/virtio/console/virtio_console.h"
#include "vmm/event_loop.h"
#include "vmm/terminal_stand_in.h"

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
        case 'p':
        case 'P': command = Command::kPause; break;
        case 's': command = Command::kSnapshot; break;
        case 'S': return Command::kSnapshotAndQuit;
        case 'b':
        case 'B': return Command::kBalloon;  // the line that follows is the host's
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
         "  Ctrl-A p         pause the VM, or resume it\r\n"
         "  Ctrl-A s         write a snapshot (--snapshot-dir) and go on\r\n"
         "  Ctrl-A S         write a snapshot and quit\r\n"
         "  Ctrl-A b         set the balloon's size (--balloon)\r\n"
         "  Ctrl-A Ctrl-A    send Ctrl-A to the guest\r\n"
         "  Ctrl-A h         this help\r\n";
}

namespace {
void write_text(int fd, const char* text) {
  write_all(fd, std::span(reinterpret_cast<const uint8_t*>(text), std::strlen(text)));
}
}  // namespace

namespace {

class SerialConsoleInput final : public ConsoleInput {
 public:
  SerialConsoleInput(Serial8250& uart, EventFd space) : uart_(uart), space_(std::move(space)) {
    uart_.set_input_space_notifier([this] { space_.signal(); });
  }
  ~SerialConsoleInput() override { uart_.set_input_space_notifier({}); }
  size_t enqueue_input(std::span<const uint8_t> bytes) override { return uart_.enqueue_input(bytes); }
  int space_fd() const override { return space_.fd(); }
  void consume_space() override { space_.consume(); }

 private:
  Serial8250& uart_;
  EventFd space_;
};

class VirtioConsoleInput final : public ConsoleInput {
 public:
  explicit VirtioConsoleInput(std::shared_ptr<VirtioConsole> console) : console_(std::move(console)) {}
  size_t enqueue_input(std::span<const uint8_t> bytes) override { return console_->enqueue_input(bytes); }
  int space_fd() const override { return console_->input_space_fd(); }
  void consume_space() override {
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(console_->input_space_fd(), &count, sizeof count);
  }
  void set_terminal_size(uint16_t cols, uint16_t rows) override { console_->set_size(cols, rows); }

 private:
  std::shared_ptr<VirtioConsole> console_;
};

}  // namespace

Result<std::unique_ptr<ConsoleInput>> serial_console_input(Serial8250& uart) {
  EventFd space = HV_TRY(EventFd::create(0, EFD_NONBLOCK));
  return std::unique_ptr<ConsoleInput>(new SerialConsoleInput(uart, std::move(space)));
}

std::unique_ptr<ConsoleInput> virtio_console_input(std::shared_ptr<VirtioConsole> console) {
  return std::make_unique<VirtioConsoleInput>(std::move(console));
}

Result<std::unique_ptr<TerminalConsole>> TerminalConsole::attach(EventLoop& loop, std::unique_ptr<ConsoleInput> target,
                                                                 int input_fd, int output_fd,
                                                                 std::function<void()> on_quit,
                                                                 PauseToggle on_pause_toggle, SnapshotKey on_snapshot,
                                                                 BalloonKey on_balloon, TerminalStandIn* stand_in) {
  if (!target) return Error(ErrorCode::kInvalidArgument, "the terminal console needs a guest device to feed");
  std::unique_ptr<TerminalConsole> console(new TerminalConsole(loop, std::move(target), input_fd, output_fd,
                                                               std::move(on_quit), std::move(on_pause_toggle),
                                                               std::move(on_snapshot), std::move(on_balloon)));
  TerminalConsole* self = console.get();
  HV_TRY(loop.add(self->target_->space_fd(), [self](uint32_t) { self->on_space(); }));
  if (stand_in) {
    self->stand_in_ = stand_in;
    HV_TRY(loop.add(stand_in->fd(), [self](uint32_t) { self->on_stand_in_answers(); }));
  }
  // stdin may be unwatchable (a regular file, /dev/null): then there is
  // simply no console input and the guest runs on (the stand-in's answers
  // still reach it; deliver_pending() does not try to watch stdin again).
  if (input_fd >= 0 && loop.add(input_fd, [self](uint32_t) { self->on_input(); }).ok())
    self->watching_input_ = true;
  else
    self->input_closed_ = true;
  self->terminal_resized();
  return console;
}

void TerminalConsole::terminal_resized() {
  winsize size{};
  if (::ioctl(output_fd_, TIOCGWINSZ, &size) != 0 || size.ws_col == 0 || size.ws_row == 0) return;
  target_->set_terminal_size(size.ws_col, size.ws_row);
}

TerminalConsole::~TerminalConsole() {
  if (watching_input_) loop_.remove(input_fd_);
  loop_.remove(target_->space_fd());
  if (stand_in_) loop_.remove(stand_in_->fd());
}

void TerminalConsole::on_input() {
  uint8_t buffer[1024];
  ssize_t n = ::read(input_fd_, buffer, sizeof buffer);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {  // EOF or error: no more input, the guest keeps running
    loop_.remove(input_fd_);
    watching_input_ = false;
    input_closed_ = true;
    return;
  }
  // Answers the stand-in owes for output printed before these keys go
  // first, as a terminal's would (the keys may answer that output).
  if (stand_in_) take_stand_in_answers();
  // A byte at a time, so several commands in one read all act, in order.
  for (ssize_t i = 0; i < n; ++i) {
    if (answering_) {
      answer_byte(buffer[i]);
      continue;
    }
    const ConsoleEscape::Command command = escape_.feed(std::span(buffer + i, 1), pending_);
    switch (command) {
      case ConsoleEscape::Command::kNone: break;
      case ConsoleEscape::Command::kHelp: write_text(output_fd_, ConsoleEscape::help_text()); break;
      case ConsoleEscape::Command::kPause:
        if (!on_pause_toggle_) break;
        deliver_pending();  // what was typed before the key reaches the guest first
        write_text(output_fd_, ("\r\n[hostvisor: " + on_pause_toggle_() + "]\r\n").c_str());
        break;
      case ConsoleEscape::Command::kSnapshot:
      case ConsoleEscape::Command::kSnapshotAndQuit: {
        if (!on_snapshot_) break;
        const bool and_quit = command == ConsoleEscape::Command::kSnapshotAndQuit;
        deliver_pending();  // typed before the key: part of the snapshot
        write_text(output_fd_, ("\r\n[hostvisor: " + on_snapshot_(and_quit) + "]\r\n").c_str());
        if (and_quit) {
          pending_.clear();
          return;
        }
        break;
      }
      case ConsoleEscape::Command::kBalloon:
        if (!on_balloon_.prompt || !on_balloon_.set) break;
        deliver_pending();
        write_text(output_fd_, ("\r\n[hostvisor: " + on_balloon_.prompt() + "] ").c_str());
        answering_ = true;
        answer_.clear();
        break;
      case ConsoleEscape::Command::kQuit:
        pending_.clear();
        on_quit_();
        return;
    }
  }
  deliver_pending();
}

void TerminalConsole::answer_byte(uint8_t byte) {
  switch (byte) {
    case '\r':
    case '\n':
      answering_ = false;
      write_text(output_fd_, ("\r\n[hostvisor: " + on_balloon_.set(answer_) + "]\r\n").c_str());
      return;
    case 0x03:  // Ctrl-C
    case 0x1b:  // Esc
      answering_ = false;
      write_text(output_fd_, "\r\n[hostvisor: balloon unchanged]\r\n");
      return;
    case 0x7f:  // Backspace (DEL), and Ctrl-H
    case 0x08:
      if (!answer_.empty()) {
        answer_.pop_back();
        write_text(output_fd_, "\b \b");
      }
      return;
    default:
      // A size is short and printable; anything else is not part of it.
      if (byte < 0x20 || byte > 0x7e || answer_.size() >= kMaxAnswer) return;
      answer_.push_back(static_cast<char>(byte));
      const char echo[2] = {static_cast<char>(byte), 0};
      write_text(output_fd_, echo);
  }
}

void TerminalConsole::feed_remote(std::span<const uint8_t> bytes) {
  if (answering_) return;  // the host's Ctrl-A b line is being typed: not the guest's
  const size_t room = pending_.size() < kMaxRemotePending ? kMaxRemotePending - pending_.size() : 0;
  bytes = bytes.first(std::min(room, bytes.size()));
  pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  deliver_pending();
}

void TerminalConsole::on_space() {
  target_->consume_space();
  deliver_pending();
}

void TerminalConsole::take_stand_in_answers() {
  const std::string answers = stand_in_->take_answers();
  pending_.insert(pending_.end(), answers.begin(), answers.end());
}

void TerminalConsole::on_stand_in_answers() {
  take_stand_in_answers();
  deliver_pending();
}

void TerminalConsole::deliver_pending() {
  const size_t taken = target_->enqueue_input(pending_);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(taken));
  if (!pending_.empty() && watching_input_) {
    loop_.remove(input_fd_);  // wait for the guest to read before taking more
    watching_input_ = false;
  } else if (pending_.empty() && !watching_input_ && !input_closed_) {
    watching_input_ = loop_.add(input_fd_, [this](uint32_t) { on_input(); }).ok();
  }
}

}  // namespace hostvisor
