// `hostvisor snapshot verify DIR`: checks all of a snapshot directory (the
// header, every state record, every chunk of the memory file against its
// checksum, the frozen disks' sizes and times) without restoring it.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

void add_snapshot_command(CLI::App& app, int* exit_status);

}  // namespace hostvisor::cli
