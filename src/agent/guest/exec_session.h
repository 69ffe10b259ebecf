// The agent's "exec": runs a command on pipes or a pty and streams its input
// and output over the connection until it ends.
#pragma once

#include <nlohmann/json.hpp>

#include "agent/protocol/channel.h"

namespace hostvisor::agent::guest {

// Replies to the request, then streams; ends with the "exit" event.
void run_exec(protocol::FrameChannel& channel, const nlohmann::json& request);

}  // namespace hostvisor::agent::guest
