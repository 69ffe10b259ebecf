#include "agent/guest/exec_session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "agent/guest/session.h"
#include "base/fd.h"

namespace hostvisor::agent::guest {
namespace {

using namespace std::chrono_literals;
using protocol::Frame;
using protocol::FrameChannel;
using protocol::FrameType;
using protocol::Stream;

constexpr size_t kMaxArgs = 4096;
constexpr size_t kMaxArgBytes = 128 * 1024;      // all of argv and env together
constexpr size_t kMaxStdinQueue = 256 * 1024;     // host input not yet taken by the command

using Command = ExecCommand;

Result<std::vector<std::string>> string_list(const nlohmann::json& request, const char* name, size_t& budget) {
  std::vector<std::string> out;
  const auto it = request.find(name);
  if (it == request.end()) return out;
  if (!it->is_array()) return Error(ErrorCode::kInvalidArgument, std::string("exec: \"") + name + "\" is not a list");
  if (it->size() > kMaxArgs) return Error(ErrorCode::kOutOfRange, std::string("exec: too many entries in \"") + name + "\"");
  for (const auto& item : *it) {
    if (!item.is_string()) return Error(ErrorCode::kInvalidArgument, std::string("exec: an entry of \"") + name + "\" is not a string");
    const auto& s = item.get_ref<const std::string&>();
    if (s.size() > budget || s.find('\0') != std::string::npos) return Error(ErrorCode::kOutOfRange, std::string("exec: \"") + name + "\" is too long or holds a NUL");
    budget -= s.size();
    out.push_back(s);
  }
  return out;
}

}  // namespace

Result<Command> parse_exec_request(const nlohmann::json& request) {
  Command c;
  size_t budget = kMaxArgBytes;
  c.argv = HV_TRY(string_list(request, "argv", budget));
  if (c.argv.empty()) return Error(ErrorCode::kInvalidArgument, "exec: \"argv\" is empty");
  c.env = HV_TRY(string_list(request, "env", budget));
  for (const auto& e : c.env)
    if (e.find('=') == std::string::npos || e.front() == '=') return Error(ErrorCode::kInvalidArgument, "exec: env entry \"" + e + "\" is not NAME=value");
  c.cwd = HV_TRY(protocol::optional_string(request, "cwd", "", 4096));
  c.terminal = HV_TRY(protocol::optional_bool(request, "terminal", false));
  const int64_t rows = HV_TRY(protocol::optional_int(request, "rows", 0));
  const int64_t cols = HV_TRY(protocol::optional_int(request, "cols", 0));
  if (rows < 0 || rows > 0xffff || cols < 0 || cols > 0xffff) return Error(ErrorCode::kOutOfRange, "exec: terminal size out of range");
  c.rows = static_cast<uint16_t>(rows);
  c.cols = static_cast<uint16_t>(cols);
  return c;
}

namespace {

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void set_window_size(int pty, uint16_t rows, uint16_t cols) {
  if (rows == 0 || cols == 0) return;
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  ::ioctl(pty, TIOCSWINSZ, &ws);
}

// The command's end of things, made before the fork.
struct ChildIo {
  UniqueFd in, out, err;         // the agent's ends (a pty: all three the master)
  UniqueFd child_in, child_out, child_err;
  std::string pty_name;
};

Result<ChildIo> make_io(const Command& c) {
  ChildIo io;
  if (c.terminal) {
    UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master.valid()) return Error::from_errno("exec: posix_openpt");
    if (::grantpt(master.get()) != 0 || ::unlockpt(master.get()) != 0) return Error::from_errno("exec: unlockpt");
    char name[128];
    if (::ptsname_r(master.get(), name, sizeof(name)) != 0) return Error::from_errno("exec: ptsname");
    io.pty_name = name;
    set_window_size(master.get(), c.rows, c.cols);
    set_nonblocking(master.get());
    io.in = UniqueFd(::dup(master.get()));  // the same master for input and output,
    io.out = std::move(master);             // so closing one closes neither
    return io;
  }
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno("exec: pipe");
  io.child_in = UniqueFd(p[0]);
  io.in = UniqueFd(p[1]);
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno("exec: pipe");
  io.out = UniqueFd(p[0]);
  io.child_out = UniqueFd(p[1]);
  if (::pipe2(p, O_CLOEXEC) != 0) return Error::from_errno("exec: pipe");
  io.err = UniqueFd(p[0]);
  io.child_err = UniqueFd(p[1]);
  set_nonblocking(io.in.get());
  set_nonblocking(io.out.get());
  set_nonblocking(io.err.get());
  return io;
}

// In the child: after fork, before exec. Only async-signal-safe calls.
[[noreturn]] void become_command(const Command& c, ChildIo& io, std::vector<char*>& argv, int error_pipe) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGPIPE, SIGCHLD, SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);
  int in, out, err;
  if (c.terminal) {
    ::setsid();
    const int slave = ::open(io.pty_name.c_str(), O_RDWR);
    if (slave < 0) goto fail;
    ::ioctl(slave, TIOCSCTTY, 0);
    in = out = err = slave;
  } else {
    ::setpgid(0, 0);  // its own group, so a signal from the host reaches its children too
    in = io.child_in.get();
    out = io.child_out.get();
    err = io.child_err.get();
  }
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) goto fail;
  if (!c.cwd.empty() && ::chdir(c.cwd.c_str()) != 0) goto fail;
  ::execvp(argv[0], argv.data());
fail:
  const int e = errno;
  (void)!::write(error_pipe, &e, sizeof(e));
  ::_exit(127);
}

class Exec {
 public:
  Exec(FrameChannel& channel, Command command) : channel_(channel), c_(std::move(command)) {}
  void run();

 private:
  Result<void> start();
  Result<bool> take_frames();  // false: the host is gone
  void pump_output(UniqueFd& fd, Stream stream);
  void write_stdin();
  void finish();

  FrameChannel& channel_;
  Command c_;
  ChildIo io_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::string stdin_queue_;
  bool stdin_eof_ = false;
  bool exited_ = false;
  int status_ = 0;
};

Result<void> Exec::start() {
  io_ = HV_TRY(make_io(c_));
  for (const auto& e : c_.env) ::putenv(const_cast<char*>(e.c_str()));  // this connection's process only
  std::vector<char*> argv;
  for (auto& a : c_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) return Error::from_errno("exec: pipe");
  UniqueFd error_read(ep[0]), error_write(ep[1]);
  pid_ = ::fork();
  if (pid_ < 0) return Error::from_errno("exec: fork");
  if (pid_ == 0) become_command(c_, io_, argv, error_write.get());
  error_write.reset();
  io_.child_in.reset();
  io_.child_out.reset();
  io_.child_err.reset();
  int child_errno = 0;
  ssize_t n;
  do n = ::read(error_read.get(), &child_errno, sizeof(child_errno));
  while (n < 0 && errno == EINTR);
  if (n == sizeof(child_errno)) {
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return Error(child_errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot run \"" + c_.argv[0] + "\": " + std::strerror(child_errno));
  }
  pidfd_ = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  if (!pidfd_.valid()) return Error::from_errno("exec: pidfd_open");
  return ok();
}

Result<bool> Exec::take_frames() {
  const bool open = HV_TRY(channel_.read_some());
  for (;;) {
    auto frame = HV_TRY(channel_.next_frame());
    if (!frame) break;
    if (frame->type == FrameType::kData) {
      if (frame->stream != Stream::kStdin) return Error(ErrorCode::kCorrupt, "exec: host sent data on an output stream");
      if (frame->payload.empty()) stdin_eof_ = true;
      else if (!stdin_eof_) stdin_queue_ += frame->payload;
      continue;
    }
    auto message = HV_TRY(protocol::parse_object(frame->payload));
    const std::string op = HV_TRY(protocol::string_field(message, "op", 64));
    if (op == "resize") {
      const int64_t rows = HV_TRY(protocol::int_field(message, "rows"));
      const int64_t cols = HV_TRY(protocol::int_field(message, "cols"));
      if (c_.terminal && rows > 0 && rows <= 0xffff && cols > 0 && cols <= 0xffff)
        set_window_size(io_.out.get(), static_cast<uint16_t>(rows), static_cast<uint16_t>(cols));
    } else if (op == "signal") {
      const int64_t signo = HV_TRY(protocol::int_field(message, "signal"));
      if (signo >= 1 && signo < 65 && !exited_) ::kill(-pid_, static_cast<int>(signo));
    }
  }
  return open;
}

void Exec::pump_output(UniqueFd& fd, Stream stream) {
  if (!fd.valid()) return;
  uint8_t buf[32 * 1024];
  const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
  if (n > 0) {
    channel_.send_data(stream, std::span<const uint8_t>(buf, static_cast<size_t>(n)));
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    fd.reset();  // EOF, or EIO from a pty whose last slave closed
    if (c_.terminal) io_.in.reset();
  }
}

void Exec::write_stdin() {
  if (!stdin_queue_.empty() && io_.in.valid()) {
    const ssize_t n = ::write(io_.in.get(), stdin_queue_.data(), stdin_queue_.size());
    if (n > 0) stdin_queue_.erase(0, static_cast<size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR) stdin_queue_.clear();  // the command closed its stdin
  }
  // A pty has no EOF of its own: the host's terminal sends ^D as a byte.
  if (stdin_eof_ && stdin_queue_.empty() && !c_.terminal) io_.in.reset();
}

void Exec::run() {
  if (auto started = start(); !started.ok()) {
    reply_error(channel_, started.error());
    (void)channel_.flush(10s);
    return;
  }
  reply_ok(channel_, {{"pid", pid_}});
  bool host_open = true;
  while (!exited_) {
    const bool room = channel_.out_pending() < FrameChannel::kOutHighWater;
    pollfd p[5] = {};
    p[0] = {host_open ? channel_.fd() : -1, static_cast<short>((stdin_queue_.size() < kMaxStdinQueue && host_open ? POLLIN : 0) |
                                               (channel_.out_pending() > 0 ? POLLOUT : 0)), 0};
    p[1] = {room && io_.out.valid() ? io_.out.get() : -1, POLLIN, 0};
    p[2] = {room && io_.err.valid() ? io_.err.get() : -1, POLLIN, 0};
    p[3] = {!stdin_queue_.empty() && io_.in.valid() ? io_.in.get() : -1, POLLOUT, 0};
    p[4] = {pidfd_.get(), POLLIN, 0};
    if (::poll(p, 5, -1) < 0 && errno != EINTR) break;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto open = take_frames();
      if (!open.ok() || !*open) {
        // The host is gone or broke the protocol: the command has no one to
        // talk to any more.
        host_open = false;
        ::kill(-pid_, SIGHUP);
        ::kill(-pid_, SIGKILL);
      }
    }
    if (p[0].revents & POLLOUT) {
      if (!channel_.write_some().ok()) {
        host_open = false;
        ::kill(-pid_, SIGKILL);
      }
    }
    if (p[1].revents) pump_output(io_.out, Stream::kStdout);
    if (p[2].revents) pump_output(io_.err, Stream::kStderr);
    if (p[3].revents || (stdin_eof_ && stdin_queue_.empty())) write_stdin();
    if (p[4].revents & POLLIN) {
      if (::waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    }
  }
  finish();
}

void Exec::finish() {
  // What the command wrote before it ended is still in the pipe or pty;
  // take it (but not what a background child keeps writing) before the exit.
  for (int round = 0; round < 64 && (io_.out.valid() || io_.err.valid()); ++round) {
    if (channel_.out_pending() >= FrameChannel::kOutHighWater && !channel_.flush(30s).ok()) return;
    pollfd p[2] = {{io_.out.valid() ? io_.out.get() : -1, POLLIN, 0}, {io_.err.valid() ? io_.err.get() : -1, POLLIN, 0}};
    if (::poll(p, 2, 0) <= 0) break;
    if (p[0].revents) pump_output(io_.out, Stream::kStdout);
    if (p[1].revents) pump_output(io_.err, Stream::kStderr);
  }
  nlohmann::json event = {{"event", "exit"}};
  if (WIFSIGNALED(status_)) event["signal"] = WTERMSIG(status_);
  else event["exit_code"] = WEXITSTATUS(status_);
  channel_.send_json(event);
  (void)channel_.flush(30s);
}

}  // namespace

void run_exec(FrameChannel& channel, const nlohmann::json& request) {
  auto command = parse_exec_request(request);
  if (!command.ok()) {
    reply_error(channel, command.error());
    (void)channel.flush(10s);
    return;
  }
  Exec(channel, std::move(*command)).run();
}

}  // namespace hostvisor::agent::guest
