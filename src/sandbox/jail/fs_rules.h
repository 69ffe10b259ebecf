// What a sandboxed process may do with the file system: a list of paths,
// each with one kind of access. Landlock (landlock.h) enforces it; the jail
// (jail.h) bind-mounts exactly these paths into its private root.
#pragma once

#include <string>
#include <vector>

namespace hostvisor::sandbox {

enum class FsAccess {
  kRead,       // read files (and list directories) at or beneath the path
  kReadExec,   // kRead, and execute: libraries, the hostvisor binary itself
  kReadWrite,  // read and write (and truncate) existing files; nothing is created or removed
  kDevice,     // a device node: read, write and ioctl (/dev/kvm, /dev/net/tun)
  kCreate,     // a directory whose content is made, replaced and removed: snapshots, sockets, logs
  kShare,      // kCreate, and symlinks and fifos: a writable shared folder, where the guest makes them
};

struct FsRule {
  std::string path;
  FsAccess access = FsAccess::kRead;
  // A path that may be missing on this host (e.g. /etc/localtime): skipped
  // then. A required path that is missing is an error.
  bool optional = false;
};

using FsRules = std::vector<FsRule>;

}  // namespace hostvisor::sandbox
