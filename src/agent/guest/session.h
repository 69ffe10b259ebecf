// One host connection to the agent: the hello, one request, its exchange.
// The agent serves each connection in a process of its own (see main.cpp), so
// a long exec never holds up a ping and a crash ends one connection only.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "agent/protocol/channel.h"
#include "base/fd.h"

namespace hostvisor::agent::guest {

inline constexpr const char* kAgentName = "hostvisor-agent";
inline constexpr const char* kAgentVersion = "0.1";

void serve_connection(UniqueFd fd);

// Replies to the request in hand.
void reply_ok(protocol::FrameChannel& channel, nlohmann::json fields = nlohmann::json::object());
// code: "unsupported" (the agent has no such operation), "not_found" (no
// such command or file), or empty.
void reply_error(protocol::FrameChannel& channel, const std::string& message, const std::string& code = "");
void reply_error(protocol::FrameChannel& channel, const Error& error);

}  // namespace hostvisor::agent::guest
