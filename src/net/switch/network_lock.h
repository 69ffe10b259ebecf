// A network's start lock: an flock on NAME.lock (switch_paths.h), held by a
// VM from its connection attempt until the switch it starts accepts, and by
// the switch while it decides to exit. A switch that ends removes its lock
// file and log while it holds the lock, so the directory does not collect
// files of networks long gone. A starter that was waiting then holds a lock
// on a removed file, which no longer excludes anyone: lock_network() checks,
// once it has the lock, that the file is still the one at the path, and
// otherwise starts again on the file there now (a new one, made by it or by
// another starter), so every holder's lock is on the one current file.
#pragma once

#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor::net {

// Blocks until it holds the lock at `path` (created 0600 if missing).
Result<UniqueFd> lock_network(const std::string& path);

// With the lock held, as the switch ends: removes the lock file and the log
// (a missing one is no error).
void remove_network_files(const std::string& lock_path, const std::string& log_path);

}  // namespace hostvisor::net
