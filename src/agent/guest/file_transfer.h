// The agent's file copy: "write_file" (host to guest) and "read_file" (guest
// to host), with mode and mtime.
#pragma once

#include <nlohmann/json.hpp>

#include "agent/protocol/channel.h"

namespace hostvisor::agent::guest {

void receive_file(protocol::FrameChannel& channel, const nlohmann::json& request);
void send_file(protocol::FrameChannel& channel, const nlohmann::json& request);

}  // namespace hostvisor::agent::guest
