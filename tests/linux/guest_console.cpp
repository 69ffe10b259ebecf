#include "tests/linux/guest_console.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hostvisor::testing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kTailBytes = 2048;

std::string tail(const std::string& s) { return s.size() <= kTailBytes ? s : "..." + s.substr(s.size() - kTailBytes); }

std::chrono::milliseconds remaining(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

}  // namespace

GuestConsole::~GuestConsole() {
  kill_child();
  for (int fd : {in_fd_, out_fd_, err_fd_})
    if (fd >= 0) ::close(fd);
}

bool GuestConsole::start(const std::vector<std::string>& argv) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    failure_ = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) {
    failure_ = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  if (pid_ == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execv(args[0], args.data());
    const char msg[] = "exec failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  in_fd_ = in[1];
  out_fd_ = out[0];
  err_fd_ = err[0];
  // A guest that stops reading must not block the test forever on write.
  ::fcntl(in_fd_, F_SETFL, O_NONBLOCK);
  return true;
}

bool GuestConsole::pump(std::chrono::milliseconds budget) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (out_fd_ < 0 && err_fd_ < 0) return false;
  const int n = ::poll(fds, 2, static_cast<int>(budget.count()));
  if (n <= 0) return true;
  int* fd_of[2] = {&out_fd_, &err_fd_};
  std::string* buf_of[2] = {&out_, &err_};
  for (int i = 0; i < 2; ++i) {
    if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char chunk[4096];
    const ssize_t got = ::read(fds[i].fd, chunk, sizeof chunk);
    if (got > 0) {
      buf_of[i]->append(chunk, static_cast<size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      ::close(*fd_of[i]);
      *fd_of[i] = -1;
    }
  }
  return out_fd_ >= 0 || err_fd_ >= 0;
}

void GuestConsole::fail(const std::string& why) {
  failure_ = why + "\n--- last output (stdout) ---\n" + tail(out_) + "\n--- stderr ---\n" + tail(err_);
}

std::optional<std::string> GuestConsole::wait_for_text(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (const size_t at = out_.find(text, cursor_); at != std::string::npos) {
      cursor_ = at + text.size();
      return text;
    }
    if (remaining(deadline).count() == 0) {
      fail("timed out after " + std::to_string(timeout.count()) + " ms waiting for \"" + text + "\"");
      return std::nullopt;
    }
    if (!pump(std::min(remaining(deadline), std::chrono::milliseconds(200)))) {
      fail("hostvisor closed its output while waiting for \"" + text + "\"");
      return std::nullopt;
    }
  }
}

std::optional<std::smatch> GuestConsole::wait_for_regex(const std::regex& pattern, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    std::smatch match;
    if (std::regex_search(out_.cbegin() + static_cast<std::ptrdiff_t>(cursor_), out_.cend(), match, pattern)) {
      cursor_ = static_cast<size_t>(match[0].second - out_.cbegin());
      return match;
    }
    if (remaining(deadline).count() == 0) {
      fail("timed out after " + std::to_string(timeout.count()) + " ms waiting for a regex match");
      return std::nullopt;
    }
    if (!pump(std::min(remaining(deadline), std::chrono::milliseconds(200)))) {
      fail("hostvisor closed its output while waiting for a regex match");
      return std::nullopt;
    }
  }
}

bool GuestConsole::send_line(const std::string& line) { return send_keys(line + "\r"); }

void GuestConsole::read_for(std::chrono::milliseconds duration) {
  const auto deadline = Clock::now() + duration;
  while (remaining(deadline).count() > 0 && pump(remaining(deadline))) {
  }
}

bool GuestConsole::send_keys(const std::string& data) {
  size_t done = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (done < data.size()) {
    const ssize_t n = ::write(in_fd_, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR) && Clock::now() < deadline) {
      pump(std::chrono::milliseconds(50));
    } else {
      fail("could not type \"" + data + "\" into hostvisor's stdin: " + std::strerror(errno));
      return false;
    }
  }
  return true;
}

std::optional<GuestConsole::CommandResult> GuestConsole::run(const std::string& command,
                                                             std::chrono::milliseconds timeout) {
  // The guest echoes the typed line, so the markers are written split
  // ("@@B""7@@") there and only appear joined in the command's output.
  const std::string id = std::to_string(++marker_);
  const std::string begin = "@@B" + id + "@@", end = "@@E" + id + "@@";
  if (!wait_for_text("/ # ", timeout)) return std::nullopt;
  if (!send_line("echo @@B\"\"" + id + "@@; " + command + "; echo @@E\"\"" + id + "@@ $?")) return std::nullopt;
  if (!wait_for_text(begin, timeout)) return std::nullopt;
  const size_t start = cursor_;
  if (!wait_for_regex(std::regex(end + " (\\d+)\r?\n"), timeout)) return std::nullopt;
  const size_t end_at = out_.rfind(end, cursor_);
  CommandResult result;
  for (char c : out_.substr(start, end_at - start))
    if (c != '\r') result.output += c;
  if (!result.output.empty() && result.output.front() == '\n') result.output.erase(0, 1);
  const size_t status_at = end_at + end.size() + 1;
  result.status = std::stoi(out_.substr(status_at, cursor_ - status_at));
  return result;
}

std::optional<int> GuestConsole::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!wait_status_) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      wait_status_ = status;
      break;
    }
    if (remaining(deadline).count() == 0) {
      kill_child();
      fail("hostvisor did not exit within " + std::to_string(timeout.count()) + " ms; killed it");
      return std::nullopt;
    }
    if (!pump(std::chrono::milliseconds(100))) ::usleep(100 * 1000);
  }
  // Collect what it wrote last; bounded, in case something it started still
  // holds the pipes open.
  for (const auto drain_until = Clock::now() + std::chrono::seconds(5);
       Clock::now() < drain_until && pump(std::chrono::milliseconds(100));) {
  }
  if (WIFEXITED(*wait_status_)) return WEXITSTATUS(*wait_status_);
  fail("hostvisor was ended by signal " + std::to_string(WTERMSIG(*wait_status_)));
  return std::nullopt;
}

bool GuestConsole::send_signal(int signal) { return pid_ > 0 && !wait_status_ && ::kill(pid_, signal) == 0; }

void GuestConsole::kill_child() {
  if (pid_ <= 0 || wait_status_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  if (::waitpid(pid_, &status, 0) == pid_) wait_status_ = status;
}

std::string guest_ok(GuestConsole& console, const std::string& command, std::chrono::milliseconds timeout) {
  auto result = console.run(command, timeout);
  if (!result) {
    ADD_FAILURE() << "guest command `" << command << "`: " << console.failure();
    return {};
  }
  EXPECT_EQ(result->status, 0) << "guest command `" << command << "` failed:\n" << result->output;
  return result->output;
}

}  // namespace hostvisor::testing
