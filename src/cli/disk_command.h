// `hostvisor disk ...`: create, inspect, check, convert, snapshot, resize and
// commit disk images (the block layer, usable without a VM).
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

// Adds the `disk` subcommand tree to `app`. Callbacks store the process exit
// status in *exit_status (0 success, 1 failure, 2 bad usage).
void add_disk_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
