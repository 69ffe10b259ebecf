// QgaClient: AgentClient over qemu-guest-agent's QMP-style JSON protocol, on
// the host end of the VM's org.qemu.guest_agent.0 port (`hostvisor run --qga
// PATH` listens on PATH), for guests that run qemu-ga instead of
// hostvisor-agent.
//
// Every conversation starts with guest-sync-delimited: a 0xFF byte resets
// qemu-ga's parser, and its answer begins with a 0xFF the reader skips to,
// so replies meant for an earlier client (or half of one) are never taken
// for ours. After a timeout or a bad reply the client syncs again.
//
// What qemu-ga cannot do is answered with ErrorCode::kUnsupported and "not
// supported by qemu-guest-agent: ...": a terminal, signals and resizes for a
// running command, a working directory, reseeding the RNG. Its exec cannot
// stream either: the command's input goes whole with the request and its
// output comes back at the end (qemu-ga keeps at most 16 MiB of each). It has
// no stat, so file copies do not carry mode and mtime (a warning says so).
//
// The agent is untrusted: replies are bounded (QgaReplyReader) and every
// field is checked (qga_replies.h) before it is used.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/agent_client.h"
#include "agent/agent_connection.h"
#include "agent/qga/qga_reply_reader.h"
#include "base/fd.h"

namespace hostvisor::agent::qga {

// A connection to the unix socket `hostvisor run --qga PATH` listens on.
AgentConnector qga_connector(std::string path);

class QgaClient : public AgentClient {
 public:
  // Replies are at most this long, except guest-exec-status's, which carries
  // up to 16 MiB of each output stream in base64.
  static constexpr size_t kMaxReply = 1 << 20;
  static constexpr size_t kMaxExecStatusReply = 48 << 20;
  // File contents move in chunks of this many bytes per request.
  static constexpr size_t kFileChunk = 48 * 1024;
  // What exec sends as the command's input, all at once.
  static constexpr size_t kMaxExecInput = 1 << 20;

  explicit QgaClient(AgentConnector connector, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  std::string name() const override { return "qemu-guest-agent"; }
  Result<void> ping() override;
  Result<AgentInfo> info() override;
  Result<ExecResult> exec(const ExecRequest& request, ExecStreams& streams) override;
  Result<void> write_file(const std::string& guest_path, int source_fd, const FileAttributes& attributes) override;
  Result<FileAttributes> read_file(const std::string& guest_path, int dest_fd) override;
  Result<void> set_time(int64_t unix_time_ns) override;
  Result<void> shutdown() override;
  Result<void> reboot() override;
  Result<void> reseed_rng(std::span<const uint8_t> entropy) override;

 private:
  using Clock = std::chrono::steady_clock;
  // Connected and synced, or an error.
  Result<void> ready();
  Result<void> sync();
  // Sends `request` and returns its checked reply's "return" value.
  Result<nlohmann::json> call(const nlohmann::json& request, size_t max_reply = kMaxReply);
  Result<void> send(const std::string& bytes);
  // The next whole reply, by the deadline.
  Result<nlohmann::json> next_reply(Clock::time_point deadline);
  Result<void> power(const char* mode);
  // Drops the connection after a failure; the next call reconnects and syncs.
  void drop();

  AgentConnector connector_;
  std::chrono::milliseconds timeout_;
  UniqueFd fd_;
  bool synced_ = false;
  QgaReplyReader reader_{kMaxReply};
  std::vector<uint8_t> unread_;  // bytes received past the last reply
  int64_t next_sync_id_;
};

}  // namespace hostvisor::agent::qga
