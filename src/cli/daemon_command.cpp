#include "cli/daemon_command.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "api/api_server.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "daemon/library_paths.h"
#include "sandbox/seccomp/thread_filter.h"
#include "web/web_console.h"

namespace hostvisor::cli {

namespace {
struct DaemonArgs {
  std::string socket;
  std::string vm_binary;
  uint16_t web_port = web::WebConsole::kDefaultPort;
  std::string share_root = "/usr/share";
  std::string seccomp = sandbox::seccomp_mode_name(sandbox::default_seccomp_mode());
};

Result<void> run_daemon(const DaemonArgs& args) {
  daemon::LibraryPaths paths = HV_TRY(daemon::default_library_paths());
  if (!args.socket.empty()) paths.api_socket = std::filesystem::absolute(args.socket).string();
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return Error::from_errno("readlink /proc/self/exe");
  self[n] = '\0';
  // SIGTERM/SIGINT end the server loop (asio's signal_set); a client that
  // leaves mid-answer is an error on its connection, not a signal.
  ::signal(SIGPIPE, SIG_IGN);
  // Before its first thread: every thread of the daemon, and every VM
  // process and switch it forks and execs, starts beneath this filter.
  sandbox::set_process_seccomp_mode(HV_TRY(sandbox::parse_seccomp_mode(args.seccomp)));
  HV_TRY(sandbox::try_install_thread_filter(sandbox::ThreadKind::kDaemon));
  auto daemon = HV_TRY(daemon::Daemon::open(paths, self, args.vm_binary));
  // The web console serves nothing until `hostvisor web` asks (POST /v1/web).
  web::WebConsole web_console(*daemon, args.web_port, args.share_root);
  auto server = HV_TRY(api::ApiServer::listen(
      paths.api_socket, *daemon, [&web_console](const api::RequestHead& head, const api::ApiRequest& request) {
        return web_console.unix_routes(head, request);
      }));
  HV_LOG_INFO("hostvisor daemon: library {}, API on {}", paths.data_dir, paths.api_socket);
  std::fprintf(stderr, "hostvisor daemon: library %s, API on %s\n", paths.data_dir.c_str(), paths.api_socket.c_str());
  HV_TRY(server->run());
  // Connections still being served run on threads of their own; the VMs run
  // on in their own processes. Nothing else to undo.
  std::fflush(nullptr);
  ::_exit(0);
}
}  // namespace

void add_daemon_command(CLI::App& app, int* exit_status) {
  auto args = std::make_shared<DaemonArgs>();
  auto* cmd = app.add_subcommand(
      "daemon",
      "Run the VM library daemon in the foreground: it keeps the VMs under $XDG_DATA_HOME/hostvisor/vms (else "
      "~/.local/share/hostvisor/vms), runs each VM as its own process, and serves the HTTP API (docs/api/openapi.yaml) "
      "on $XDG_RUNTIME_DIR/hostvisor/api.sock (else /tmp/hostvisor-$UID/api.sock). `hostvisor vm` starts it when "
      "needed");
  cmd->add_option("--socket", args->socket, "Serve the API on this unix socket instead");
  cmd->add_option("--web-port", args->web_port,
                  "The port of 127.0.0.1 where `hostvisor web` serves the web console unless told another")
      ->capture_default_str();
  cmd->add_option("--seccomp", args->seccomp,
                  "kill (the default), log or off: the daemon's seccomp filter, and the --seccomp of the VM processes "
                  "and switches it starts (docs/seccomp.md)")
      ->capture_default_str();
  // What runs each VM instead of this binary's `run` (tests: a stand-in).
  cmd->add_option("--vm-binary", args->vm_binary)->group("");
  // Where xterm.js is looked for instead of /usr/share (tests: a stand-in).
  cmd->add_option("--share-root", args->share_root)->group("");
  cmd->callback([args, exit_status] {
    auto outcome = run_daemon(*args);
    if (!outcome) {
      std::fprintf(stderr, "hostvisor: daemon: %s\n", outcome.error().message().c_str());
      *exit_status = outcome.error().code() == ErrorCode::kInvalidArgument ? 2 : 1;
      return;
    }
    *exit_status = 0;
  });
}

}  // namespace hostvisor::cli
