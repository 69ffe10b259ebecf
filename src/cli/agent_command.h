// `hostvisor agent --vsock PATH exec|shell|cp|info|time-sync|ping|shutdown|reboot`:
// talks to the guest agent of a running VM through its vsock socket.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_agent_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
