#include "sandbox/jail/sandbox.h"

#include <sys/prctl.h>

#include <sstream>

#include "base/fd.h"
#include "sandbox/jail/capabilities.h"
#include "sandbox/jail/landlock.h"

namespace hostvisor::sandbox {

Result<SandboxMode> parse_sandbox_mode(const std::string& text) {
  if (text == "on") return SandboxMode::kOn;
  if (text == "off") return SandboxMode::kOff;
  return Error(ErrorCode::kInvalidArgument, "--sandbox " + text + ": must be on or off");
}

std::string SandboxOutcome::missing() const {
  if (landlock_abi == 0) return landlock_missing + ": the VM process can open any file its user can";
  return "";
}

std::string describe_landlock(const SandboxOutcome& outcome, const std::optional<TcpRules>& tcp) {
  if (outcome.landlock_abi == 0) return "no Landlock";
  std::string text = "Landlock ABI " + std::to_string(outcome.landlock_abi) + " with " +
                     std::to_string(outcome.rules) + " paths; ";
  if (!tcp) {
    text += "TCP not restricted";
  } else if (!outcome.tcp_restricted) {
    text += "TCP not restricted (TCP ports need Landlock ABI 4)";
  } else {
    std::string ports;
    for (const uint16_t port : tcp->bind_ports) ports += (ports.empty() ? "" : ",") + std::to_string(port);
    if (tcp->bind_any) ports = "any";
    text += "TCP bind " + (ports.empty() ? std::string("no port") : ports == "any" ? "any port" : "port " + ports) +
            ", connect " +
            (tcp->connect_any ? "any port" : "no port");
  }
  text += outcome.scoped ? "; abstract unix sockets and signals scoped"
                         : "; abstract unix sockets and signals not scoped (that needs Landlock ABI 6)";
  return text;
}

Result<unsigned> thread_count() {
  const std::string stat = HV_TRY(read_file("/proc/self/stat"));
  // Field 20 is num_threads; the command name (field 2) may hold spaces, so
  // count from the ')' that ends it.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return Error(ErrorCode::kIo, "/proc/self/stat: unexpected format");
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 20 && fields >> field; ++i)
    if (i == 20) return static_cast<unsigned>(std::stoul(field));
  return Error(ErrorCode::kIo, "/proc/self/stat: no thread count");
}

Result<SandboxOutcome> enter_sandbox(const SandboxPolicy& policy) {
  const unsigned threads = HV_TRY(thread_count());
  if (threads != 1)
    return Error(ErrorCode::kInternal,
                 "the sandbox must be entered before any thread starts (" + std::to_string(threads) + " threads run)");
  SandboxOutcome outcome;
  // Nothing this process execs (the switch, for an internal network) can
  // gain privileges: set-uid bits and file capabilities are ignored.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Error::from_errno("PR_SET_NO_NEW_PRIVS");
  if (auto abi = landlock_abi(); abi) {
    const LandlockOutcome landlock = HV_TRY(restrict_filesystem(policy.rules, policy.tcp));
    outcome.landlock_abi = landlock.abi;
    outcome.rules = landlock.rules;
    outcome.tcp_restricted = landlock.tcp_restricted;
    outcome.scoped = landlock.scoped;
  } else if (abi.error().code() == ErrorCode::kUnsupported) {
    outcome.landlock_missing = abi.error().message();
  } else {
    return abi.error();
  }
  std::vector<int> keep;
  for (const KeptCapability& kept : policy.keep) keep.push_back(kept.capability);
  const CapabilityOutcome caps = HV_TRY(drop_capabilities(keep));
  outcome.capabilities_dropped = caps.had_any;
  outcome.bounding_set_dropped = caps.bounding_dropped;
  return outcome;
}

}  // namespace hostvisor::sandbox
