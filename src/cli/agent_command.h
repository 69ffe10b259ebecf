// `hostvisor agent --vsock PATH|--qga PATH exec|shell|cp|info|time-sync|ping|shutdown|reboot`:
// talks to the guest agent of a running VM through its vsock socket, or to
// qemu-guest-agent through the socket of `hostvisor run --qga`.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_agent_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
