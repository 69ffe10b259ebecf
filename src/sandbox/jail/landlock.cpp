#include "sandbox/jail/landlock.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "base/fd.h"

namespace hostvisor::sandbox {

namespace {

// Debian 12's kernel headers stop at ABI 2; the rights of later ABIs are
// spelled out here (include/uapi/linux/landlock.h of Linux 6.18).
constexpr uint64_t kExecute = 1ULL << 0;
constexpr uint64_t kWriteFile = 1ULL << 1;
constexpr uint64_t kReadFile = 1ULL << 2;
constexpr uint64_t kReadDir = 1ULL << 3;
constexpr uint64_t kRemoveDir = 1ULL << 4;
constexpr uint64_t kRemoveFile = 1ULL << 5;
constexpr uint64_t kMakeChar = 1ULL << 6;
constexpr uint64_t kMakeDir = 1ULL << 7;
constexpr uint64_t kMakeReg = 1ULL << 8;
constexpr uint64_t kMakeSock = 1ULL << 9;
constexpr uint64_t kMakeFifo = 1ULL << 10;
constexpr uint64_t kMakeBlock = 1ULL << 11;
constexpr uint64_t kMakeSym = 1ULL << 12;
constexpr uint64_t kRefer = 1ULL << 13;     // ABI 2
constexpr uint64_t kTruncate = 1ULL << 14;  // ABI 3
constexpr uint64_t kIoctlDev = 1ULL << 15;  // ABI 5

// Network rights (ABI 4) and scopes (ABI 6).
constexpr uint64_t kBindTcp = 1ULL << 0;
constexpr uint64_t kConnectTcp = 1ULL << 1;
constexpr uint64_t kScopeAbstractUnixSocket = 1ULL << 0;
constexpr uint64_t kScopeSignal = 1ULL << 1;
constexpr int kFirstNetAbi = 4;
constexpr int kFirstScopeAbi = 6;

// The rights that make sense on a file (the rest apply to directories).
constexpr uint64_t kFileRights = kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;

// Every file-system right an ABI version knows: all of them are handled, so
// none is left unrestricted.
uint64_t handled_rights(int abi) {
  uint64_t rights = kExecute | kWriteFile | kReadFile | kReadDir | kRemoveDir | kRemoveFile | kMakeChar | kMakeDir |
                    kMakeReg | kMakeSock | kMakeFifo | kMakeBlock | kMakeSym;
  if (abi >= 2) rights |= kRefer;
  if (abi >= 3) rights |= kTruncate;
  if (abi >= 5) rights |= kIoctlDev;
  return rights;
}

uint64_t rights_of(FsAccess access) {
  switch (access) {
    case FsAccess::kRead: return kReadFile | kReadDir;
    case FsAccess::kReadExec: return kReadFile | kReadDir | kExecute;
    case FsAccess::kReadWrite: return kReadFile | kReadDir | kWriteFile | kTruncate;
    case FsAccess::kDevice: return kReadFile | kWriteFile | kIoctlDev;
    case FsAccess::kCreate:
      // No device nodes, fifos or symlinks, and nothing executable.
      return kReadFile | kReadDir | kWriteFile | kTruncate | kMakeReg | kMakeDir | kMakeSock | kRemoveFile |
             kRemoveDir | kRefer;
    case FsAccess::kShare:
      // Never device nodes: the guest could make one that reaches the host's disks.
      return rights_of(FsAccess::kCreate) | kMakeSym | kMakeFifo;
  }
  return 0;
}

// The uapi structs, as the kernel lays them out (the path-beneath one is
// packed). The ruleset's size tells the kernel which fields it holds: an
// older kernel refuses a larger struct whose extra fields are not zero, so
// each ABI is given only the fields it knows.
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};
struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};
struct NetPortAttr {
  uint64_t allowed_access;
  uint64_t port;
};
constexpr int kRulePathBeneath = 1;
constexpr int kRuleNetPort = 2;

size_t ruleset_size(int abi) {
  if (abi >= kFirstScopeAbi) return sizeof(RulesetAttr);
  if (abi >= kFirstNetAbi) return offsetof(RulesetAttr, scoped);
  return offsetof(RulesetAttr, handled_access_net);
}

}  // namespace

Result<int> landlock_abi() {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi >= 1) return static_cast<int>(abi);
  if (errno == ENOSYS) return Error(ErrorCode::kUnsupported, "the kernel has no Landlock (Linux 5.13 or later)");
  if (errno == EOPNOTSUPP)
    return Error(ErrorCode::kUnsupported, "Landlock is not enabled at boot (add landlock to the lsm= list)");
  return Error::from_errno("landlock_create_ruleset");
}

Result<LandlockOutcome> restrict_filesystem(const FsRules& rules, const std::optional<TcpRules>& tcp) {
  LandlockOutcome outcome;
  outcome.abi = HV_TRY(landlock_abi());
  const uint64_t handled = handled_rights(outcome.abi);
  RulesetAttr attr{.handled_access_fs = handled, .handled_access_net = 0, .scoped = 0};
  // A right is handled (and so refused but for its rules) only when not
  // every port is allowed: "any port" is the kernel's default for an
  // unhandled right.
  outcome.tcp_restricted = tcp && outcome.abi >= kFirstNetAbi;
  if (outcome.tcp_restricted)
    attr.handled_access_net = (tcp->bind_any ? 0 : kBindTcp) | (tcp->connect_any ? 0 : kConnectTcp);
  // Nothing a sandboxed process does needs to reach an abstract unix socket
  // or signal a process outside its sandbox (docs/sandbox.md).
  outcome.scoped = outcome.abi >= kFirstScopeAbi;
  if (outcome.scoped) attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
  UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, ruleset_size(outcome.abi), 0)));
  if (!ruleset.valid()) return Error::from_errno("landlock_create_ruleset");
  if (outcome.tcp_restricted && !tcp->bind_any) {
    for (const uint16_t port : tcp->bind_ports) {
      const NetPortAttr rule{.allowed_access = kBindTcp, .port = port};
      if (::syscall(SYS_landlock_add_rule, ruleset.get(), kRuleNetPort, &rule, 0) != 0)
        return Error::from_errno("a Landlock rule for TCP port " + std::to_string(port));
    }
  }
  for (const FsRule& rule : rules) {
    UniqueFd path(::open(rule.path.c_str(), O_PATH | O_CLOEXEC));
    if (!path.valid()) {
      if (errno == ENOENT && rule.optional) {
        ++outcome.skipped;
        continue;
      }
      return Error::from_errno(rule.path);
    }
    struct stat st {};
    if (::fstat(path.get(), &st) != 0) return Error::from_errno(rule.path);
    uint64_t allowed = rights_of(rule.access) & handled;
    if (!S_ISDIR(st.st_mode)) allowed &= kFileRights;
    if (allowed == 0) continue;
    PathBeneathAttr beneath{.allowed_access = allowed, .parent_fd = path.get()};
    if (::syscall(SYS_landlock_add_rule, ruleset.get(), kRulePathBeneath, &beneath, 0) != 0)
      return Error::from_errno("a Landlock rule for " + rule.path);
    ++outcome.rules;
  }
  if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) != 0) return Error::from_errno("landlock_restrict_self");
  return outcome;
}

}  // namespace hostvisor::sandbox
