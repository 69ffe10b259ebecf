#include "child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace hostvisor::testing {

std::string ChildResult::describe() const {
  if (!started) return "not started: " + error;
  if (timed_out) return "killed after the time limit";
  if (signal) return "killed by signal " + std::to_string(signal);
  return "exit status " + std::to_string(exit_status);
}

namespace {

struct Pipe {
  int read = -1, write = -1;
  ~Pipe() {
    if (read >= 0) close(read);
    if (write >= 0) close(write);
  }
};

bool open_pipe(Pipe& p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  p.read = fds[0];
  p.write = fds[1];
  return true;
}

// Reads what is available; false at end of file.
bool drain(int fd, std::string& into) {
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return false;
  if (into.size() < kMaxCapture) into.append(buf, static_cast<size_t>(n));
  return true;
}

// VmRSS of a live process in KiB, 0 if it cannot be read.
uint64_t rss_kib(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  FILE* f = fopen(path, "re");
  if (!f) return 0;
  char line[256];
  uint64_t kib = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1) break;
  fclose(f);
  return kib;
}

}  // namespace

ChildResult run_child(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                      const StopCondition& stop_when, const std::string& input, int stop_signal) {
  if (stop_signal == 0) stop_signal = SIGTERM;
  ChildResult result;
  Pipe out, err, in;
  if (argv.empty() || !open_pipe(out) || !open_pipe(err) || (!input.empty() && !open_pipe(in))) {
    result.error = argv.empty() ? "no program given" : std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  if (!input.empty()) {
    // Written before the fork, while this process holds the read end (no
    // SIGPIPE), into the pipe's buffer (no blocking); closing ends the input.
    if (input.size() > 65536 || write(in.write, input.data(), input.size()) != static_cast<ssize_t>(input.size())) {
      result.error = "could not put " + std::to_string(input.size()) + " bytes of input in a pipe";
      return result;
    }
    close(in.write);
    in.write = -1;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    result.error = std::string("fork: ") + std::strerror(errno);
    return result;
  }
  if (pid == 0) {
    int stdin_fd = input.empty() ? open("/dev/null", O_RDONLY) : in.read;
    if (stdin_fd < 0 || dup2(stdin_fd, 0) < 0 || dup2(out.write, 1) < 0 || dup2(err.write, 2) < 0) _exit(126);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out.write);
  close(err.write);
  out.write = err.write = -1;
  result.started = true;

  auto deadline = start + timeout;
  std::chrono::steady_clock::time_point stopped_at;
  bool out_open = true, err_open = true;
  auto next_rss_sample = start;
  while (out_open || err_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    pollfd fds[2] = {{out_open ? out.read : -1, POLLIN, 0}, {err_open ? err.read : -1, POLLIN, 0}};
    // While a stop condition waits, wake up often enough for one that times the signal.
    const bool stop_pending = stop_when && !result.terminated;
    const int wait_ms =
        stop_pending ? std::min<int>(2, static_cast<int>(left.count())) : static_cast<int>(left.count());
    int ready = poll(fds, 2, wait_ms);
    if (const auto now = std::chrono::steady_clock::now(); now >= next_rss_sample) {
      result.peak_rss_kib = std::max(result.peak_rss_kib, rss_kib(pid));
      next_rss_sample = now + kRssSampleInterval;
    }
    if (ready < 0 && errno != EINTR) break;
    if (ready > 0 && fds[0].revents) out_open = drain(out.read, result.out);
    if (stop_pending && stop_when(result.out)) {
      result.terminated = true;
      kill(pid, stop_signal);
      stopped_at = std::chrono::steady_clock::now();
      deadline = stopped_at + kTerminateGrace;
    }
    if (ready > 0 && fds[1].revents) err_open = drain(err.read, result.err);
  }
  // Output closed does not mean exited: keep the deadline while waiting.
  int status = 0;
  for (;;) {
    pid_t done = waitpid(pid, &status, result.timed_out ? 0 : WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) break;
    if (done == 0 && std::chrono::steady_clock::now() >= deadline) {
      result.timed_out = true;
      kill(pid, SIGKILL);
    } else if (done == 0) {
      usleep(10 * 1000);
    }
  }
  const auto end = std::chrono::steady_clock::now();
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(end - start);
  if (result.terminated) result.stop_to_exit = std::chrono::duration_cast<std::chrono::milliseconds>(end - stopped_at);
  if (WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  if (result.exit_status == 127 && result.out.empty() && result.err.empty()) result.error = "exec failed";
  return result;
}

}  // namespace hostvisor::testing
