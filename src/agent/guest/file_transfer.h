// The agent's file copy: "write_file" (host to guest) and "read_file" (guest
// to host), with mode and mtime.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/protocol/channel.h"

namespace hostvisor::agent::guest {

// A file request, checked: an absolute path, and for write_file the size
// (at most 1 TiB), mode (07777) and mtime the host announces.
struct FileRequest {
  std::string path;
  int64_t size = 0;
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
};
Result<FileRequest> parse_write_file_request(const nlohmann::json& request);
Result<std::string> parse_read_file_request(const nlohmann::json& request);

void receive_file(protocol::FrameChannel& channel, const nlohmann::json& request);
void send_file(protocol::FrameChannel& channel, const nlohmann::json& request);

}  // namespace hostvisor::agent::guest
