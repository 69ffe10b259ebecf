// --jail: the VM process in namespaces of its own, as Firecracker's jailer
// puts it, without a separate binary. Entered while the process has one
// thread (a new user namespace needs that), before the sandbox.
//
// The process forks once. The child is PID 1 of a new PID namespace, in a
// new user namespace (uid and gid 0 inside, mapped to one unprivileged uid
// and gid outside), a new mount namespace whose root is a private tmpfs
// holding bind mounts of exactly the paths the sandbox allows and a /dev of
// only the device nodes among them, and, unless the VM's networks need the
// host's, a new network namespace. The parent waits, passes on stop
// signals, and ends with the child's status.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "base/result.h"
#include "sandbox/jail/fs_rules.h"

namespace hostvisor::sandbox {

struct JailSpec {
  FsRules paths;             // bound into the private root (the sandbox's rules)
  bool new_network = true;   // false: stay in the host's network namespace
  std::optional<uid_t> uid;  // outside uid (root only); default: the caller's
  std::optional<gid_t> gid;  // outside gid (root only); default: the caller's
};

struct JailOutcome {
  bool new_network = false;
  uid_t outside_uid = 0;
  gid_t outside_gid = 0;
};

// Returns in the jailed child; the parent never returns (it exits with the
// child's status). An error means nothing was entered (in the parent) or
// the child could not finish setting up (it then exits with status 1 after
// printing the error).
Result<JailOutcome> enter_jail(const JailSpec& spec);

}  // namespace hostvisor::sandbox
