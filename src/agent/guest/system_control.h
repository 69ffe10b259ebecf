// The agent's system operations: the wall clock, power, the RNG.
#pragma once

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace hostvisor::agent::guest {

// The clock, power and the RNG are the machine's: an agent serving a unix
// socket (the host-side tests) must not change the host's, so main() turns
// them off there and they are answered "unsupported".
void set_system_operations_enabled(bool enabled);
bool system_operations_enabled();

// {"unix_ns": N}: sets CLOCK_REALTIME; answers how far off the clock was.
Result<nlohmann::json> set_time(const nlohmann::json& request);

// {"entropy": "<hex>"}: credits the bytes to the kernel's pool (RNDADDENTROPY).
Result<nlohmann::json> reseed_rng(const nlohmann::json& request);

// Syncs the disks and powers off or reboots, in a child so the reply has gone.
void power_off_after_reply(bool reboot);

}  // namespace hostvisor::agent::guest
