#include "cli/disk_command.h"

#include <cstdio>

namespace hostvisor::cli {

void add_disk_command(CLI::App& app, int* exit_status) {
  CLI::App* disk = app.add_subcommand("disk", "Create and manage disk images (raw, qcow2)");
  disk->callback([exit_status] {
    std::fprintf(stderr, "hostvisor: disk: not built yet\n");
    *exit_status = 1;
  });
}

}  // namespace hostvisor::cli
