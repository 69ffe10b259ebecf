#include "cli/agent_command.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "agent/hostvisor_agent_client.h"
#include "agent/qga/qga_client.h"
#include "base/fd.h"

namespace hostvisor::cli {
namespace {

// Exit statuses of exec/shell when the command itself did not run (as
// `docker exec` does): the agent failed, or the command was not found.
constexpr int kAgentFailedStatus = 125;
constexpr int kNotFoundStatus = 127;

struct AgentArgs {
  std::string vsock;
  std::string qga;          // the VM's qemu-guest-agent socket (hostvisor run --qga PATH)
  std::string unix_socket;  // straight to an agent on a unix socket (tests)
  bool terminal = false;
  std::vector<std::string> env;
  std::string cwd;
  std::vector<std::string> command;
  std::string source, destination;
};

Result<std::unique_ptr<agent::AgentClient>> open_client(const AgentArgs& args) {
  if (!args.unix_socket.empty())
    return std::unique_ptr<agent::AgentClient>(std::make_unique<agent::HostvisorAgentClient>(agent::unix_connector(args.unix_socket)));
  auto qga = [&] {
    return std::unique_ptr<agent::AgentClient>(std::make_unique<agent::qga::QgaClient>(agent::qga::qga_connector(args.qga)));
  };
  if (args.vsock.empty() && args.qga.empty())
    return Error(ErrorCode::kInvalidArgument,
                 "--vsock PATH or --qga PATH is required (hostvisor run prints the VM's vsock socket; --qga is the "
                 "path given to hostvisor run --qga)");
  if (args.vsock.empty()) return qga();
  auto hostvisor_agent = agent::vsock_connector(args.vsock);
  // Both given: the hostvisor agent if the guest runs one, else qemu-ga.
  if (!args.qga.empty() && !hostvisor_agent()) return qga();
  return std::unique_ptr<agent::AgentClient>(std::make_unique<agent::HostvisorAgentClient>(std::move(hostvisor_agent)));
}

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The host terminal in raw mode for the life of an interactive command, so
// every key (Ctrl-C, Ctrl-D, arrows) goes to the guest's pty.
class RawTerminal {
 public:
  RawTerminal() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

bool window_size(uint16_t& rows, uint16_t& cols) {
  winsize ws{};
  for (int fd : {STDIN_FILENO, STDOUT_FILENO}) {
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
      rows = ws.ws_row;
      cols = ws.ws_col;
      return true;
    }
  }
  return false;
}

int run_exec(const AgentArgs& args, std::vector<std::string> command, bool terminal) {
  auto client = open_client(args);
  if (!client) {
    std::fprintf(stderr, "hostvisor: agent: %s\n", client.error().message().c_str());
    return client.error().code() == ErrorCode::kInvalidArgument ? 2 : kAgentFailedStatus;
  }
  agent::ExecRequest request;
  request.argv = std::move(command);
  request.env = args.env;
  request.cwd = args.cwd;
  request.terminal = terminal;
  if (terminal) {
    const char* term = std::getenv("TERM");
    request.env.push_back(std::string("TERM=") + (term != nullptr ? term : "xterm"));
    if (!window_size(request.rows, request.cols)) {
      request.rows = 24;
      request.cols = 80;
    }
  }
  // Signals become events: SIGWINCH resizes the guest's pty; SIGINT, SIGTERM
  // and SIGHUP go to the command (in raw mode Ctrl-C is a key, not a signal).
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGWINCH, SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, s);
  ::sigprocmask(SIG_BLOCK, &signals, nullptr);
  UniqueFd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));

  agent::ExecStreams streams;
  streams.stdin_fd = STDIN_FILENO;
  streams.on_stdout = [](std::span<const uint8_t> b) { write_all(STDOUT_FILENO, b); };
  streams.on_stderr = [](std::span<const uint8_t> b) { write_all(STDERR_FILENO, b); };
  streams.event_fd = signal_fd.get();
  streams.on_event = [&](agent::ExecControl& control) {
    signalfd_siginfo info{};
    while (::read(signal_fd.get(), &info, sizeof(info)) == sizeof(info)) {
      if (info.ssi_signo == SIGWINCH) {
        uint16_t rows, cols;
        if (terminal && window_size(rows, cols)) (void)control.resize(rows, cols);
      } else {
        (void)control.signal(static_cast<int>(info.ssi_signo));
      }
    }
  };
  Result<agent::ExecResult> result = Error(ErrorCode::kInternal, "");
  {
    std::unique_ptr<RawTerminal> raw;
    if (terminal) raw = std::make_unique<RawTerminal>();
    result = (*client)->exec(request, streams);
  }
  if (!result) {
    std::fprintf(stderr, "hostvisor: agent exec: %s\n", result.error().message().c_str());
    return result.error().code() == ErrorCode::kNotFound ? kNotFoundStatus : kAgentFailedStatus;
  }
  return result->status();
}

std::string base_name(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Result<void> copy_in(agent::AgentClient& client, const std::string& host_path, std::string guest_path) {
  UniqueFd fd = HV_TRY(open_file(host_path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno("stat " + host_path);
  if (!guest_path.empty() && guest_path.back() == '/') guest_path += base_name(host_path);
  agent::FileAttributes attributes;
  attributes.mode = st.st_mode & 07777;
  attributes.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  return client.write_file(guest_path, fd.get(), attributes);
}

Result<void> copy_out(agent::AgentClient& client, const std::string& guest_path, std::string host_path) {
  struct stat st {};
  if (::stat(host_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) host_path += "/" + base_name(guest_path);
  // Into a temporary beside the target, renamed over it once whole, so a
  // failed copy leaves no half file under the target's name.
  std::string temp = host_path + ".hostvisor-XXXXXX";
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd.valid()) return Error::from_errno("cannot create " + temp);
  auto fetch = [&]() -> Result<void> {
    const agent::FileAttributes attributes = HV_TRY(client.read_file(guest_path, fd.get()));
    if (::fchmod(fd.get(), attributes.mode) != 0) return Error::from_errno("chmod " + host_path);
    const timespec times[2] = {{0, UTIME_OMIT},
                               {static_cast<time_t>(attributes.mtime_ns / 1'000'000'000),
                                static_cast<long>(attributes.mtime_ns % 1'000'000'000)}};
    if (::futimens(fd.get(), times) != 0) return Error::from_errno("set the mtime of " + host_path);
    if (::rename(temp.c_str(), host_path.c_str()) != 0) return Error::from_errno("rename to " + host_path);
    return ok();
  };
  auto fetched = fetch();
  if (!fetched) ::unlink(temp.c_str());
  return fetched;
}

Result<void> run_cp(const AgentArgs& args) {
  const bool from_guest = args.source.starts_with("vm:");
  const bool to_guest = args.destination.starts_with("vm:");
  if (from_guest == to_guest)
    return Error(ErrorCode::kInvalidArgument, "cp: exactly one of SRC and DST names the guest side with vm:");
  auto client = HV_TRY(open_client(args));
  if (to_guest) return copy_in(*client, args.source, args.destination.substr(3));
  return copy_out(*client, args.source.substr(3), args.destination);
}

std::string human_bytes(uint64_t bytes) {
  char text[32];
  if (bytes >= (uint64_t{1} << 30))
    std::snprintf(text, sizeof(text), "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  else
    std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

Result<void> run_info(const AgentArgs& args) {
  auto client = HV_TRY(open_client(args));
  const agent::AgentInfo info = HV_TRY(client->info());
  std::printf(
      "agent:    %s\nos:       %s\nkernel:   %s\nhostname: %s\nuptime:   %.0f s\nmemory:   %s total, %s available\n",
      info.agent.c_str(), info.os.c_str(), info.kernel_release.c_str(), info.hostname.c_str(), info.uptime_seconds,
      human_bytes(info.memory_total_bytes).c_str(), human_bytes(info.memory_available_bytes).c_str());
  std::printf("filesystems:\n");
  for (const auto& fs : info.filesystems)
    std::printf("  %-20s %-8s %s total, %s free\n", fs.mount_point.c_str(), fs.type.c_str(),
                human_bytes(fs.total_bytes).c_str(), human_bytes(fs.free_bytes).c_str());
  std::printf("interfaces:\n");
  for (const auto& nic : info.interfaces) {
    std::printf("  %-10s %s", nic.name.c_str(), nic.mac.c_str());
    for (const auto& a : nic.addresses) std::printf(" %s", a.c_str());
    std::printf("\n");
  }
  return ok();
}

Result<void> run_time_sync(const AgentArgs& args) {
  auto client = HV_TRY(open_client(args));
  HV_TRY(client->set_time(now_ns()));
  if (auto* ours = dynamic_cast<agent::HostvisorAgentClient*>(client.get()))
    std::printf("guest clock set to the host's (it was %+.3f s off)\n",
                static_cast<double>(ours->last_clock_offset_ns()) / 1e9);
  else
    std::printf("guest clock set to the host's\n");
  return ok();
}

// The end of the subcommands that are not exec: 0, or 1 with the message.
void report(const Result<void>& outcome, int* exit_status) {
  if (!outcome) {
    std::fprintf(stderr, "hostvisor: agent: %s\n", outcome.error().message().c_str());
    *exit_status = outcome.error().code() == ErrorCode::kInvalidArgument ? 2 : 1;
    return;
  }
  *exit_status = 0;
}

}  // namespace

void add_agent_command(CLI::App& app, int* exit_status) {
  auto args = std::make_shared<AgentArgs>();
  auto* cmd =
      app.add_subcommand("agent", "Talk to the hostvisor agent in a running VM (exec, shell, cp, info, time-sync)");
  cmd->require_subcommand(1);
  cmd->add_option("--vsock", args->vsock, "The VM's vsock socket (hostvisor run prints it; --vsock uds=PATH)");
  cmd->add_option("--qga", args->qga,
                  "The VM's qemu-guest-agent socket (hostvisor run --qga PATH), for a guest running qemu-ga; with "
                  "--vsock too, used when no hostvisor agent answers")
      ->type_name("PATH");
  cmd->add_option("--unix", args->unix_socket)->group("");  // an agent on a unix socket (tests)

  auto* exec = cmd->add_subcommand("exec", "Run a command in the guest; its exit status is hostvisor's");
  exec->add_flag("-t,--tty", args->terminal,
                 "On a terminal in the guest (the host terminal goes raw; window size follows)");
  exec->add_option("-e,--env", args->env, "NAME=value for the command (repeatable)");
  exec->add_option("-w,--workdir", args->cwd, "The command's working directory in the guest");
  exec->add_option("CMD", args->command, "The command and its arguments (after --)")->required();
  exec->callback([args, exit_status] { *exit_status = run_exec(*args, args->command, args->terminal); });

  auto* shell = cmd->add_subcommand("shell", "An interactive shell in the guest (exec -t /bin/sh)");
  shell->callback([args, exit_status] { *exit_status = run_exec(*args, {"/bin/sh", "-l"}, true); });

  auto* cp = cmd->add_subcommand(
      "cp", "Copy a file in or out, keeping its mode and mtime: cp FILE vm:/PATH, cp vm:/PATH FILE");
  cp->add_option("SRC", args->source)->required();
  cp->add_option("DST", args->destination)->required();
  cp->callback([args, exit_status] { report(run_cp(*args), exit_status); });

  cmd->add_subcommand("info", "The guest's OS, kernel, uptime, memory, filesystems and addresses")
      ->callback([args, exit_status] { report(run_info(*args), exit_status); });
  cmd->add_subcommand("time-sync", "Set the guest's clock to the host's")->callback([args, exit_status] {
    report(run_time_sync(*args), exit_status);
  });
  cmd->add_subcommand("ping", "Check the agent answers")->callback([args, exit_status] {
    report([&]() -> Result<void> { return HV_TRY(open_client(*args))->ping(); }(), exit_status);
  });
  cmd->add_subcommand("shutdown", "Power the guest off")->callback([args, exit_status] {
    report([&]() -> Result<void> { return HV_TRY(open_client(*args))->shutdown(); }(), exit_status);
  });
  cmd->add_subcommand("reboot", "Reboot the guest")->callback([args, exit_status] {
    report([&]() -> Result<void> { return HV_TRY(open_client(*args))->reboot(); }(), exit_status);
  });
}

}  // namespace hostvisor::cli
