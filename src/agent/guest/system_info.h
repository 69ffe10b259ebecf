// The agent's "info": OS, kernel, uptime, memory, filesystems, addresses.
#pragma once

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace hostvisor::agent::guest {

Result<nlohmann::json> collect_system_info();

}  // namespace hostvisor::agent::guest
