#include "daemon/vm_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "base/fd.h"

namespace hostvisor::daemon {

namespace {
// /proc/PID/stat: "pid (comm) state ppid ...": the comm may hold spaces and
// parentheses, so fields are counted from the last ')'.
bool read_stat(pid_t pid, char* state, uint64_t* start_time) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return false;
  const size_t close = text->rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(text->substr(close + 2));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index == 3) *state = field.empty() ? '?' : field[0];
    if (index == 22) {
      *start_time = std::strtoull(field.c_str(), nullptr, 10);
      return true;
    }
  }
  return false;
}
}  // namespace

Result<ProcessIdentity> spawn_detached(const std::string& binary, const std::vector<std::string>& args,
                                       const std::string& log_path) {
  UniqueFd log = HV_TRY(open_file(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600));
  UniqueFd null = HV_TRY(open_file("/dev/null", O_RDONLY));
  std::vector<std::string> argv_storage{binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // A pipe closed on exec tells the parent whether exec worked.
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) return Error::from_errno("pipe2");
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return Error::from_errno("fork");
  }
  if (pid == 0) {
    ::setsid();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(null.get(), 0);
    ::dup2(log.get(), 1);
    ::dup2(log.get(), 2);
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execv(binary.c_str(), argv.data());
    const int err = errno;
    [[maybe_unused]] auto written = ::write(status_pipe[1], &err, sizeof(err));
    ::_exit(127);
  }
  ::close(status_pipe[1]);
  int err = 0;
  ssize_t n;
  do n = ::read(status_pipe[0], &err, sizeof(err));
  while (n < 0 && errno == EINTR);
  ::close(status_pipe[0]);
  if (n == sizeof(err)) {
    ::waitpid(pid, nullptr, 0);
    return Error::from_errno("start " + binary, err);
  }
  ProcessIdentity identity{.pid = pid};
  char state = 0;
  if (!read_stat(pid, &state, &identity.start_time))
    return Error(ErrorCode::kIo, "the VM process ended at once; see " + log_path);
  return identity;
}

bool is_running(const ProcessIdentity& process) {
  if (process.pid <= 0) return false;
  char state = 0;
  uint64_t start_time = 0;
  if (!read_stat(process.pid, &state, &start_time)) return false;
  return start_time == process.start_time && state != 'Z' && state != 'X';
}

void reap_if_child(pid_t pid) {
  if (pid > 0) ::waitpid(pid, nullptr, WNOHANG);
}

std::string log_tail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > static_cast<std::streamoff>(max_bytes) ? size - max_bytes : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  const size_t last_line = tail.rfind('\n');
  return last_line == std::string::npos ? tail : tail.substr(last_line + 1);
}

}  // namespace hostvisor::daemon
