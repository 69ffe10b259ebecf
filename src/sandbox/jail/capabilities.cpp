#include "sandbox/jail/capabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace hostvisor::sandbox {

namespace {

struct CapSets {
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
};

Result<CapSets> read_caps() {
  CapSets sets;
  if (::syscall(SYS_capget, &sets.header, sets.data) != 0) return Error::from_errno("capget");
  return sets;
}

bool in(const std::vector<int>& keep, int cap) { return std::find(keep.begin(), keep.end(), cap) != keep.end(); }

}  // namespace

std::string capability_name(int capability) {
  switch (capability) {
    case CAP_NET_ADMIN: return "cap_net_admin";
    case CAP_IPC_LOCK: return "cap_ipc_lock";
    case CAP_SYS_ADMIN: return "cap_sys_admin";
    case CAP_SETPCAP: return "cap_setpcap";
  }
  return "capability " + std::to_string(capability);
}

Result<CapabilityOutcome> drop_capabilities(const std::vector<int>& keep) {
  CapabilityOutcome outcome;
  CapSets sets = HV_TRY(read_caps());
  for (const auto& data : sets.data) outcome.had_any |= (data.permitted | data.effective | data.inheritable) != 0;
  // The bounding set first: dropping from it needs CAP_SETPCAP, which the
  // capset below takes away.
  const bool can_setpcap = (sets.data[0].effective & CAP_TO_MASK(CAP_SETPCAP)) != 0;
  if (can_setpcap) {
    for (int cap = 0; cap <= 63; ++cap) {
      if (in(keep, cap)) continue;
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        if (errno == EINVAL) break;  // past the kernel's last capability
        return Error::from_errno("dropping " + capability_name(cap) + " from the bounding set");
      }
    }
    outcome.bounding_dropped = true;
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return Error::from_errno("clearing the ambient capabilities");
  for (int word = 0; word < _LINUX_CAPABILITY_U32S_3; ++word) {
    uint32_t kept = 0;
    for (int cap : keep)
      if (cap / 32 == word) kept |= CAP_TO_MASK(cap);
    sets.data[word].effective &= kept;
    sets.data[word].permitted &= kept;
    sets.data[word].inheritable = 0;
  }
  if (::syscall(SYS_capset, &sets.header, sets.data) != 0) return Error::from_errno("capset");
  return outcome;
}

}  // namespace hostvisor::sandbox
