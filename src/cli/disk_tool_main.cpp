// block_disk_tool: `hostvisor disk ...` without the rest of hostvisor, so the
// block layer's interop and crash tests do not depend on the VM layers.
#include <CLI/CLI.hpp>

#include "base/log.h"
#include "cli/command_line.h"
#include "cli/disk_command.h"

int main(int argc, char** argv) {
  CLI::App app{"hostvisor disk subcommands (block layer test driver)", "block_disk_tool"};
  app.require_subcommand(1);
  int exit_status = 0;
  hostvisor::cli::add_disk_command(app, &exit_status);
  hostvisor::init_logging("warn");
  return hostvisor::cli::parse_and_run(app, argc, argv, exit_status);
}
