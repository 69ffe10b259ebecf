// `hostvisor vm ...` and `hostvisor net ...`: the VM library from the command
// line. Every subcommand is a request to the daemon's API (api_client.h),
// which is started on demand.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_vm_command(CLI::App& app, int* exit_status);
void add_net_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
