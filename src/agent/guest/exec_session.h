// The agent's "exec": runs a command on pipes or a pty and streams its input
// and output over the connection until it ends.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/protocol/channel.h"

namespace hostvisor::agent::guest {

// An exec request, checked: argv (1 to 4096 entries), env (NAME=value),
// cwd, terminal and its size; argv and env together at most 128 KiB.
struct ExecCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  bool terminal = false;
  uint16_t rows = 0, cols = 0;
};
Result<ExecCommand> parse_exec_request(const nlohmann::json& request);

// Replies to the request, then streams; ends with the "exit" event.
void run_exec(protocol::FrameChannel& channel, const nlohmann::json& request);

}  // namespace hostvisor::agent::guest
