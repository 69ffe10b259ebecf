// The end of every command-line program here: parse, let the chosen
// subcommand's callback run, and turn the outcome into an exit status.
#pragma once

#include <CLI/CLI.hpp>

namespace hostvisor::cli {

// Parses argv with app (whose callbacks run the command and set
// exit_status) and returns the process's exit status: the command's own,
// 0 for --help and --version, 2 for a usage error (CLI11 has printed it).
inline int parse_and_run(CLI::App& app, int argc, char** argv, const int& exit_status) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return exit_status;
}

}  // namespace hostvisor::cli
