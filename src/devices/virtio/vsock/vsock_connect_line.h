// The first line a host program writes on hostvisor's vsock unix socket to
// open a connection to the guest (the protocol Firecracker and Cloud
// Hypervisor use): "CONNECT <port>\n", port a decimal 32-bit number. The
// answer, once the guest accepted, is "OK <host port>\n".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace hostvisor::vsock {

// Longer than any valid line ("CONNECT 4294967295\n" is 19 bytes): a peer
// that sends this much without a newline is not speaking the protocol.
inline constexpr size_t kMaxConnectLine = 32;

struct ConnectLine {
  uint32_t port = 0;
  size_t length = 0;  // bytes of the line, newline included
};

// Looks at what the host program has sent so far. Nothing: no newline yet
// (read more). An error: not a CONNECT line, or no newline within
// kMaxConnectLine bytes; the message says what was wrong.
Result<std::optional<ConnectLine>> parse_connect_line(std::string_view received);

// "OK <port>\n".
std::string ok_line(uint32_t host_port);

}  // namespace hostvisor::vsock
