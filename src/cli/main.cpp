// hostvisor: the command line.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/log.h"
#include "cli/agent_command.h"
#include "cli/command_line.h"
#include "cli/daemon_command.h"
#include "cli/disk_command.h"
#include "cli/run_command.h"
#include "cli/snapshot_command.h"
#include "cli/switch_command.h"
#include "cli/vm_command.h"
#include "cli/web_command.h"

int main(int argc, char** argv) {
  CLI::App app{"hostvisor: a hosted hypervisor for Linux hosts (KVM or its own software x86-64 CPU)", "hostvisor"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hostvisor 0.1");
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn (default), error")->capture_default_str();

  int exit_status = 0;
  hostvisor::cli::add_run_command(app, &exit_status);
  hostvisor::cli::add_disk_command(app, &exit_status);
  hostvisor::cli::add_snapshot_command(app, &exit_status);
  hostvisor::cli::add_switch_command(app, &exit_status);
  hostvisor::cli::add_agent_command(app, &exit_status);
  hostvisor::cli::add_daemon_command(app, &exit_status);
  hostvisor::cli::add_vm_command(app, &exit_status);
  hostvisor::cli::add_net_command(app, &exit_status);
  hostvisor::cli::add_web_command(app, &exit_status);
  app.parse_complete_callback([&] { hostvisor::init_logging(log_level); });

  return hostvisor::cli::parse_and_run(app, argc, argv, exit_status);
}
