// The unix stream sockets of vsock's host side: the listener at PATH that
// host programs connect to, and the connection to a host program's listener
// at PATH_<port> for a guest-initiated stream. Both non-blocking.
#pragma once

#include <cstdint>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor::vsock {

// Listens at `path`. A socket file left there by a hostvisor that is gone
// (nobody accepts on it) is replaced; one that is in use is an error.
Result<UniqueFd> listen_unix(const std::string& path);

// Connects to the listener at `path`; fails at once if none accepts
// (no file, refused, its backlog full): a guest's connection is answered
// now, never after a wait.
Result<UniqueFd> connect_unix(const std::string& path);

// A socket path of process `pid`'s own beside `path`: NAME-PID.EXT.
std::string own_socket_path(const std::string& path, int pid);

// Where a guest-initiated stream to host port `port` goes: PATH_<port>.
inline std::string port_path(const std::string& uds_path, uint32_t port) {
  return uds_path + "_" + std::to_string(port);
}

}  // namespace hostvisor::vsock
