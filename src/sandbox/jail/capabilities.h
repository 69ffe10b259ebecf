// Dropping Linux capabilities: the effective, permitted, inheritable and
// ambient sets, and the bounding set (so no later exec can bring one back).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::sandbox {

struct CapabilityOutcome {
  bool had_any = false;           // the process held a capability before
  bool bounding_dropped = false;  // false: no CAP_SETPCAP to drop the bounding set (an unprivileged user)
};

// Keeps only `keep` (CAP_* numbers) in the effective and permitted sets and
// the bounding set, and nothing inheritable or ambient. Per thread: call it
// while the process has one thread.
Result<CapabilityOutcome> drop_capabilities(const std::vector<int>& keep);

// "cap_net_admin", for messages.
std::string capability_name(int capability);

}  // namespace hostvisor::sandbox
