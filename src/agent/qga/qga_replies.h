// The checked meaning of qemu-guest-agent's replies (QEMU's qga/qapi-schema.json):
// every field is type-, length- and range-checked before the client uses it,
// since the agent is untrusted. Each decoder takes the whole reply object.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/agent_client.h"
#include "base/result.h"

namespace hostvisor::agent::qga {

// Strings the host keeps from a reply (names, paths, messages) are at most
// this long; longer ones make the reply corrupt.
inline constexpr size_t kMaxReplyString = 4096;

// The reply's "return" value; an "error" reply becomes an error carrying the
// agent's (sanitized, shortened) description.
Result<nlohmann::json> reply_return(const nlohmann::json& reply);

// guest-sync-delimited answers with the id it was given.
bool is_sync_reply(const nlohmann::json& reply, int64_t id);

// guest-info: the agent's version.
Result<std::string> decode_version(const nlohmann::json& reply);
// guest-get-osinfo into info.os and info.kernel_release.
Result<void> decode_osinfo(const nlohmann::json& reply, AgentInfo& info);
Result<std::string> decode_host_name(const nlohmann::json& reply);
Result<std::vector<InterfaceInfo>> decode_interfaces(const nlohmann::json& reply);
Result<std::vector<FilesystemInfo>> decode_filesystems(const nlohmann::json& reply);

// guest-exec: the process id; guest-exec-status: its state and output.
Result<int64_t> decode_exec_pid(const nlohmann::json& reply);
struct ExecStatus {
  bool exited = false;
  int exit_code = 0;
  int signal = 0;
  std::vector<uint8_t> out, err;
  bool truncated = false;  // qemu-ga kept only the first part of the output
};
Result<ExecStatus> decode_exec_status(const nlohmann::json& reply);

// guest-file-open: the handle.
Result<int64_t> decode_file_handle(const nlohmann::json& reply);
// guest-file-read of at most `requested` bytes.
struct FileChunk {
  std::vector<uint8_t> data;
  bool eof = false;
};
Result<FileChunk> decode_file_read(const nlohmann::json& reply, uint64_t requested);
// guest-file-write of `sent` bytes: how many were written.
Result<uint64_t> decode_file_write(const nlohmann::json& reply, uint64_t sent);

}  // namespace hostvisor::agent::qga
