// Where a network's switch lives: a unix socket, a lock file and a log in
// one per-user directory,
//   $XDG_RUNTIME_DIR/hostvisor/net/NAME.{sock,lock,log}
// or, where XDG_RUNTIME_DIR is unset (root in CI, a cron job),
//   /tmp/hostvisor-$UID/net/NAME.{sock,lock,log}.
// Each directory is created 0700 and refused unless it is a real directory
// owned by the user with no group or world access: anyone who can reach the
// socket can join the network.
#pragma once

#include <string>

#include "base/result.h"

namespace hostvisor::net {

struct SwitchPaths {
  std::string directory;
  std::string socket;
  std::string lock;
  std::string log;
};

// NAME: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'.
Result<void> check_network_name(const std::string& name);

// The directory of switch sockets (created and checked), without NAME.
Result<std::string> switch_directory();

// The paths of network NAME's switch; creates and checks the directory.
Result<SwitchPaths> switch_paths(const std::string& name);

// Creates `path` 0700 if missing, then refuses it unless it is a directory
// (not a symlink) owned by the effective user with no group/world bits.
Result<void> ensure_private_directory(const std::string& path);

}  // namespace hostvisor::net
