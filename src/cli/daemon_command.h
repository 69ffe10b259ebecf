// `hostvisor daemon [--socket PATH]`: the per-user VM library daemon and its API.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_daemon_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
