// `hostvisor run`: boot a guest kernel on the console.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_run_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
