// The sandboxed VM process: no_new_privs, a Landlock allow-list of the VM's
// own files, and capabilities dropped. Entered once, while the process has
// one thread (each of the three is per thread, and every thread started
// afterwards inherits them), and never left.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "sandbox/jail/fs_rules.h"
#include "sandbox/jail/net_rules.h"

namespace hostvisor::sandbox {

// --sandbox=on|off, named like --seccomp=kill|log|off.
enum class SandboxMode { kOn, kOff };
Result<SandboxMode> parse_sandbox_mode(const std::string& text);

struct KeptCapability {
  int capability = 0;  // CAP_*
  std::string why;     // for the log: what needs it after set-up
};

struct SandboxPolicy {
  FsRules rules;
  std::vector<KeptCapability> keep;
  // TCP ports (Landlock ABI 4); unset: TCP is not restricted.
  std::optional<TcpRules> tcp;
};

struct SandboxOutcome {
  int landlock_abi = 0;          // 0: no Landlock on this kernel
  std::string landlock_missing;  // why, when landlock_abi is 0
  unsigned rules = 0;
  bool tcp_restricted = false;  // the policy's TCP rules apply (ABI 4 and later)
  bool scoped = false;          // abstract unix sockets and signals scoped (ABI 6 and later)
  bool capabilities_dropped = false;  // the process had some and dropped them
  bool bounding_set_dropped = false;
  // What this host lacks, for one line at start (empty: nothing).
  std::string missing() const;
};

// For the --log-level info line: what Landlock confines, and what this
// kernel's ABI leaves out, e.g. "Landlock ABI 7 with 20 paths; TCP bind
// 2222, connect any port; abstract unix sockets and signals scoped".
std::string describe_landlock(const SandboxOutcome& outcome, const std::optional<TcpRules>& tcp);

// The number of threads of this process (from /proc/self/stat).
Result<unsigned> thread_count();

// no_new_privs, Landlock (where the kernel has it: without it the outcome
// says so and the rest still applies), capabilities. Fails if the process
// has more than one thread, or if a step the kernel has fails.
Result<SandboxOutcome> enter_sandbox(const SandboxPolicy& policy);

}  // namespace hostvisor::sandbox
