// Landlock, through its raw system calls: a file-system allow-list for this
// process and every process it starts, which no later code in it can lift.
#pragma once

#include <optional>
#include <string>

#include "base/result.h"
#include "sandbox/jail/fs_rules.h"
#include "sandbox/jail/net_rules.h"

namespace hostvisor::sandbox {

// The kernel's Landlock ABI version (1 = Linux 5.13, 2 = refer, 3 =
// truncate, 4 = TCP ports, 5 = device ioctls, 6 = scopes, 7 = logging), or
// an error saying why there is none (the kernel lacks it, or it is not
// among the boot's LSMs).
Result<int> landlock_abi();

struct LandlockOutcome {
  int abi = 0;           // the version used
  unsigned rules = 0;    // paths added
  unsigned skipped = 0;  // optional paths missing on this host
  bool tcp_restricted = false;  // TCP rules applied (ABI 4 and later, and asked for)
  bool scoped = false;          // abstract unix sockets and signals scoped (ABI 6 and later)
};

// Restricts the calling thread (and what it later starts) to `rules`:
// every access right the kernel's ABI knows is handled, so anything not
// granted is refused (EACCES; EXDEV for a link or rename across directories
// without the refer right). Call it while the process has one thread, and
// after no_new_privs (or with CAP_SYS_ADMIN). A required path that is
// missing, or one that cannot be opened, is an error naming it.
//
// With `tcp` (and ABI 4 or later), TCP binds are refused (EACCES) but on
// its ports, and connects unless it allows any. With ABI 6 or later the
// process is also scoped: it can neither connect to an abstract unix
// socket nor signal a process made outside its sandbox (EPERM), whatever
// `tcp` says; processes it starts afterwards are inside.
Result<LandlockOutcome> restrict_filesystem(const FsRules& rules, const std::optional<TcpRules>& tcp = std::nullopt);

}  // namespace hostvisor::sandbox
