// Writes that a crash (SIGKILL, power loss) leaves either done or not done:
// the new content goes to a temporary name in the same directory, is synced,
// and is renamed over the target; then the directory is synced.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace hostvisor::daemon {

Result<void> write_file_atomically(const std::string& path, std::string_view content, int mode = 0600);

// fsync of a directory, so a rename or unlink in it is on disk.
Result<void> sync_directory(const std::string& path);

// Removes a tree, ignoring what is already gone (read-only files included:
// frozen snapshot disks are 0444 but their directory is ours).
void remove_tree(const std::string& path);

}  // namespace hostvisor::daemon
