#include "net/switch/switch_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "net/switch/network_lock.h"
#include "net/switch/switch_paths.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor::net {

namespace {
constexpr auto kStartTimeout = std::chrono::seconds(10);

// Connects to the socket at `path`; an invalid fd if nothing listens there.
UniqueFd try_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), std::min(path.size() + 1, sizeof addr.sun_path - 1));
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return {};
  const int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  return fd;
}

Result<std::string> own_executable() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return Error::from_errno("finding hostvisor's own executable (/proc/self/exe)");
  return std::string(path, static_cast<size_t>(n));
}

std::string log_tail(const std::string& path) {
  auto text = read_file(path);
  if (!text) return "";
  std::string tail = text->size() > 400 ? text->substr(text->size() - 400) : *text;
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  const size_t last = tail.rfind('\n');
  return last == std::string::npos ? tail : tail.substr(last + 1);
}

// The switch is this process's child for as long as it runs (often longer
// than the VM): a thread of its own waits for it, so it never lingers as a
// zombie of a VM that outlives it. A VM that exits first leaves it to init.
void reap_when_it_ends(pid_t pid) {
  std::thread([pid] {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }).detach();
}

Result<pid_t> spawn_switch(const SwitchLaunch& launch, const SwitchPaths& paths) {
  const std::string program = launch.program.empty() ? HV_TRY(own_executable()) : launch.program;
  // The switch's filter follows the VM's --seccomp (it starts under the
  // VM's set-up filter in any case: filters carry across execve).
  std::vector<std::string> args = {program, "switch", launch.name, "--lock-held",
                                   std::string("--seccomp=") +
                                       sandbox::seccomp_mode_name(sandbox::process_seccomp_mode())};
  if (launch.dhcp) {
    args.push_back("--dhcp");
    args.push_back(format_ipv4_network(*launch.dhcp));
  }
  if (launch.host_only) {
    args.push_back("--hostonly");
    args.push_back(format_ipv4_network(*launch.host_only));
    if (launch.rootless) args.push_back("--rootless");
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t files;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&files);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, 1, paths.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  // Its own session (no terminal's Ctrl-C), no signal blocked or ignored as
  // the VM's threads have them.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, program.c_str(), &files, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return Error::from_errno("starting the switch (" + program + " switch " + launch.name + ")", err);
  return pid;
}
}  // namespace

Result<UniqueFd> connect_to_switch(const SwitchLaunch& launch) {
  const SwitchPaths paths = HV_TRY(switch_paths(launch.name));
  const UniqueFd lock = HV_TRY(lock_network(paths.lock));
  if (UniqueFd fd = try_connect(paths.socket); fd.valid()) return fd;

  const pid_t pid = HV_TRY(spawn_switch(launch, paths));
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  for (;;) {
    if (UniqueFd fd = try_connect(paths.socket); fd.valid()) {
      if (launch.reap) reap_when_it_ends(pid);
      return fd;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      const std::string why = log_tail(paths.log);
      return Error(ErrorCode::kIo, "the switch for network " + launch.name + " exited at start" +
                                       (why.empty() ? "" : ": " + why) + " (log: " + paths.log + ")");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGTERM);
      if (launch.reap) reap_when_it_ends(pid);
      return Error(ErrorCode::kIo, "the switch for network " + launch.name + " did not open " + paths.socket +
                                       " within 10 s (log: " + paths.log + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace hostvisor::net
