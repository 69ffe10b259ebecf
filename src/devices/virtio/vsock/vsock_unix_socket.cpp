#include "devices/virtio/vsock/vsock_unix_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

namespace hostvisor::vsock {

namespace {

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return Error(ErrorCode::kInvalidArgument, "vsock socket path " + path + ": must be 1 to " +
                                                  std::to_string(sizeof addr.sun_path - 1) + " bytes long");
  path.copy(addr.sun_path, path.size());
  return addr;
}

Result<UniqueFd> stream_socket() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Error::from_errno("vsock: creating a unix socket");
  return fd;
}

}  // namespace

Result<UniqueFd> listen_unix(const std::string& path) {
  const sockaddr_un addr = HV_TRY(unix_address(path));
  UniqueFd fd = HV_TRY(stream_socket());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
    if (errno != EADDRINUSE) return Error::from_errno("vsock: binding " + path);
    // Someone's file: a live listener keeps it, a dead one's is stale.
    if (connect_unix(path).ok())
      return Error(ErrorCode::kBusy, "vsock: " + path + " is in use by another program (another VM?)");
    ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
      return Error::from_errno("vsock: binding " + path);
  }
  if (::listen(fd.get(), 128) < 0) return Error::from_errno("vsock: listening on " + path);
  return fd;
}

std::string own_socket_path(const std::string& path, int pid) {
  const size_t slash = path.rfind('/');
  size_t dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) dot = path.size();
  return path.substr(0, dot) + "-" + std::to_string(pid) + path.substr(dot);
}

Result<UniqueFd> connect_unix(const std::string& path) {
  const sockaddr_un addr = HV_TRY(unix_address(path));
  UniqueFd fd = HV_TRY(stream_socket());
  // A unix connect completes at once or fails (EAGAIN: the backlog is full).
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
    return Error::from_errno("vsock: connecting to " + path);
  return fd;
}

}  // namespace hostvisor::vsock
