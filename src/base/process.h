// Running a helper program (apt-get, dpkg-deb) and collecting its output.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor {

struct ProcessResult {
  int exit_status = -1;  // exit code, or 128 + signal number
  std::string output;    // stdout and stderr, interleaved
};

// Runs argv[0] (looked up in PATH) with `argv` in directory `cwd` (empty:
// the current one), stdin from /dev/null. Fails only if it could not start.
Result<ProcessResult> run_process(const std::vector<std::string>& argv, const std::string& cwd = "");

// As run_process, but a non-zero exit is an error carrying the output's tail.
Result<std::string> run_process_checked(const std::vector<std::string>& argv, const std::string& cwd = "");

}  // namespace hostvisor
