#include "agent/agent_connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hostvisor::agent {
namespace {

constexpr int kHandshakeTimeoutMs = 5000;
constexpr size_t kMaxHandshakeLine = 64;

// Reads the vsock device's one-line answer byte by byte, so nothing the
// agent sends after it is taken from the stream.
Result<std::string> read_line(int fd) {
  std::string line;
  while (line.size() < kMaxHandshakeLine) {
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, kHandshakeTimeoutMs);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error(ErrorCode::kIo, "vsock: no answer to CONNECT within 5 s");
    char c;
    const ssize_t r = ::read(fd, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Error::from_errno("vsock: read");
    if (r == 0) return line;  // closed: the caller says why
    if (c == '\n') return line;
    line.push_back(c);
  }
  return Error(ErrorCode::kCorrupt, "vsock: the answer to CONNECT is too long");
}

}  // namespace

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Error(ErrorCode::kInvalidArgument, "socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::from_errno("socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return Error::from_errno("cannot connect to " + path + " (is the VM running with a vsock device?)");
  return fd;
}

AgentConnector vsock_connector(std::string uds_path, uint32_t port) {
  return [uds_path, port]() -> Result<UniqueFd> {
    UniqueFd fd = HV_TRY(connect_unix(uds_path));
    const std::string request = "CONNECT " + std::to_string(port) + "\n";
    if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
      return Error::from_errno("vsock " + uds_path + ": send CONNECT");
    const std::string answer = HV_TRY(read_line(fd.get()));
    if (answer.rfind("OK ", 0) != 0)
      return Error(ErrorCode::kNotFound, "vsock " + uds_path + ": nothing listens on guest port " + std::to_string(port) +
                                             " (is hostvisor-agent running in the guest?)");
    return fd;
  };
}

AgentConnector unix_connector(std::string path) {
  return [path]() { return connect_unix(path); };
}

}  // namespace hostvisor::agent
