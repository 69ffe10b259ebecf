#include "devices/virtio/vsock/vsock_connect_line.h"

#include <optional>

namespace hostvisor::vsock {

Result<std::optional<ConnectLine>> parse_connect_line(std::string_view received) {
  const size_t newline = received.find('\n');
  if (newline == std::string_view::npos) {
    if (received.size() >= kMaxConnectLine)
      return Error(ErrorCode::kInvalidArgument, "vsock: no newline in the first " + std::to_string(kMaxConnectLine) +
                                                    " bytes; expected \"CONNECT <port>\\n\"");
    return std::optional<ConnectLine>();
  }
  std::string_view line = received.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // a telnet-style client
  constexpr std::string_view kVerb = "CONNECT ";
  if (line.substr(0, kVerb.size()) != kVerb)
    return Error(ErrorCode::kInvalidArgument, "vsock: expected \"CONNECT <port>\\n\" as the first line");
  const std::string_view digits = line.substr(kVerb.size());
  if (digits.empty() || digits.size() > 10)
    return Error(ErrorCode::kInvalidArgument, "vsock: CONNECT needs a port number from 0 to 4294967295");
  uint64_t port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9')
      return Error(ErrorCode::kInvalidArgument, "vsock: CONNECT needs a port number from 0 to 4294967295");
    port = port * 10 + static_cast<uint64_t>(c - '0');
  }
  if (port > UINT32_MAX)
    return Error(ErrorCode::kInvalidArgument, "vsock: CONNECT port " + std::string(digits) + " is above 4294967295");
  return std::optional<ConnectLine>(ConnectLine{static_cast<uint32_t>(port), newline + 1});
}

std::string ok_line(uint32_t host_port) { return "OK " + std::to_string(host_port) + "\n"; }

}  // namespace hostvisor::vsock
