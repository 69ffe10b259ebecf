// `hostvisor switch NAME [--dhcp CIDR]`: the Ethernet switch of internal
// network NAME, in the foreground. A VM whose --net internal,name=NAME finds
// no switch starts one itself (detached), so users rarely type this.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_switch_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
