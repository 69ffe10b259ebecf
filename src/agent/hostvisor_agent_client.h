// HostvisorAgentClient: AgentClient over the hostvisor agent protocol
// (docs/agent-protocol.md), one connection per request.
//
// The agent is untrusted: every reply is a bounded frame (FrameDecoder), its
// fields are type- and range-checked, file content may not exceed the size
// the agent announced, and unknown events end the request with an error.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>

#include "agent/agent_client.h"
#include "agent/agent_connection.h"
#include "agent/protocol/channel.h"

namespace hostvisor::agent {

class HostvisorAgentClient : public AgentClient {
 public:
  explicit HostvisorAgentClient(AgentConnector connector, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  std::string name() const override { return "hostvisor-agent"; }
  Result<void> ping() override;
  Result<AgentInfo> info() override;
  Result<ExecResult> exec(const ExecRequest& request, ExecStreams& streams) override;
  Result<void> write_file(const std::string& guest_path, int source_fd, const FileAttributes& attributes) override;
  Result<FileAttributes> read_file(const std::string& guest_path, int dest_fd) override;
  Result<void> set_time(int64_t unix_time_ns) override;
  Result<void> shutdown() override;
  Result<void> reboot() override;
  Result<void> reseed_rng(std::span<const uint8_t> entropy) override;

  // How far the guest's clock was from the time the last set_time() set, as
  // the agent measured it (guest minus host), for the log.
  int64_t last_clock_offset_ns() const { return last_clock_offset_ns_; }

 private:
  // A connection past the agent's hello (protocol version checked).
  Result<protocol::FrameChannel> open();
  // Sends request on a new connection and returns the checked reply.
  Result<nlohmann::json> call(const nlohmann::json& request);
  // Sends request on channel and returns the checked reply.
  Result<nlohmann::json> call_on(protocol::FrameChannel& channel, const nlohmann::json& request);

  AgentConnector connector_;
  std::chrono::milliseconds timeout_;
  int64_t last_clock_offset_ns_ = 0;
};

// Decodes an info reply (exposed for the fuzz target).
Result<AgentInfo> decode_info(const nlohmann::json& reply);

}  // namespace hostvisor::agent
