// Names a user gives to things in the VM library (VMs, snapshots, networks).
// Every one becomes a path component under the library, so only a small
// alphabet is allowed: no '/', no "..", no leading '-' or '.'.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace hostvisor::daemon {

// [a-z0-9][a-z0-9-]{0,62}; `what` names the thing in the message ("VM name").
Result<void> check_name(std::string_view name, std::string_view what);

}  // namespace hostvisor::daemon
