// `hostvisor web [--port N] [--revoke]`: the web console's URL, from the
// daemon (started when needed).
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_web_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
