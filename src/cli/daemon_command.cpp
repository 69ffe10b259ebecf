#include "cli/daemon_command.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "api/api_server.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "daemon/library_paths.h"

namespace hostvisor::cli {

namespace {
Result<void> run_daemon(const std::string& socket_override, const std::string& vm_binary) {
  daemon::LibraryPaths paths = HV_TRY(daemon::default_library_paths());
  if (!socket_override.empty()) paths.api_socket = std::filesystem::absolute(socket_override).string();
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return Error::from_errno("readlink /proc/self/exe");
  self[n] = '\0';
  // SIGTERM/SIGINT end the server loop (asio's signal_set); a client that
  // leaves mid-answer is an error on its connection, not a signal.
  ::signal(SIGPIPE, SIG_IGN);
  auto daemon = HV_TRY(daemon::Daemon::open(paths, self, vm_binary));
  auto server = HV_TRY(api::ApiServer::listen(paths.api_socket, *daemon));
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
  auto socket = std::make_shared<std::string>();
  auto vm_binary = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "daemon",
      "Run the VM library daemon in the foreground: it keeps the VMs under $XDG_DATA_HOME/hostvisor/vms (else "
      "~/.local/share/hostvisor/vms), runs each VM as its own process, and serves the HTTP API (docs/api/openapi.yaml) "
      "on $XDG_RUNTIME_DIR/hostvisor/api.sock (else /tmp/hostvisor-$UID/api.sock). `hostvisor vm` starts it when "
      "needed");
  cmd->add_option("--socket", *socket, "Serve the API on this unix socket instead");
  // What runs each VM instead of this binary's `run` (tests: a stand-in).
  cmd->add_option("--vm-binary", *vm_binary)->group("");
  cmd->callback([socket, vm_binary, exit_status] {
    auto outcome = run_daemon(*socket, *vm_binary);
    if (!outcome) {
      std::fprintf(stderr, "hostvisor: daemon: %s\n", outcome.error().message().c_str());
      *exit_status = outcome.error().code() == ErrorCode::kInvalidArgument ? 2 : 1;
      return;
    }
    *exit_status = 0;
  });
}

}  // namespace hostvisor::cli
