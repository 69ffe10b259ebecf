// hostvisor-agent: the guest agent. Listens on vsock port 1024 (or a unix
// socket, for tests on the host) and serves each connection in a child
// process: one request per connection, see docs/agent-protocol.md.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent/agent_client.h"
#include "agent/guest/session.h"
#include "agent/guest/system_control.h"
#include "base/fd.h"

namespace {

using hostvisor::UniqueFd;

void usage() {
  std::fprintf(stderr,
               "usage: hostvisor-agent [--listen vsock:PORT | --listen unix:PATH]\n"
               "  serves the hostvisor agent protocol (default: vsock:%u)\n",
               hostvisor::agent::kAgentVsockPort);
}

UniqueFd listen_vsock(unsigned port) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    std::fprintf(stderr, "hostvisor-agent: vsock socket: %s (is there a virtio-vsock device?)\n", std::strerror(errno));
    return {};
  }
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd.get(), 64) != 0) {
    std::fprintf(stderr, "hostvisor-agent: vsock port %u: %s\n", port, std::strerror(errno));
    return {};
  }
  return fd;
}

UniqueFd listen_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "hostvisor-agent: socket path too long: %s\n", path.c_str());
    return {};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ::unlink(path.c_str());
  if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd.get(), 64) != 0) {
    std::fprintf(stderr, "hostvisor-agent: unix socket %s: %s\n", path.c_str(), std::strerror(errno));
    return {};
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "vsock:" + std::to_string(hostvisor::agent::kAgentVsockPort);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--listen" && i + 1 < argc) {
      listen = argv[++i];
    } else {
      usage();
      return arg == "--help" ? 0 : 2;
    }
  }
  UniqueFd server;
  if (listen.rfind("vsock:", 0) == 0) {
    char* end = nullptr;
    const unsigned long port = std::strtoul(listen.c_str() + 6, &end, 10);
    if (*end != '\0' || port == 0 || port > 0xffffffffUL) {
      usage();
      return 2;
    }
    server = listen_vsock(static_cast<unsigned>(port));
  } else if (listen.rfind("unix:", 0) == 0) {
    hostvisor::agent::guest::set_system_operations_enabled(false);
    server = listen_unix(listen.substr(5));
  } else {
    usage();
    return 2;
  }
  if (!server.valid()) return 1;
  // Children are reaped by the kernel; a host that hangs up mid-write must
  // not kill the agent.
  ::signal(SIGCHLD, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  std::fprintf(stderr, "hostvisor-agent: listening on %s\n", listen.c_str());
  for (;;) {
    UniqueFd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      std::fprintf(stderr, "hostvisor-agent: accept: %s\n", std::strerror(errno));
      ::sleep(1);  // e.g. out of file descriptors: do not spin
      continue;
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      server.reset();
      ::signal(SIGCHLD, SIG_DFL);  // the connection waits for its command itself
      hostvisor::agent::guest::serve_connection(std::move(conn));
      ::_exit(0);
    }
    if (pid < 0) std::fprintf(stderr, "hostvisor-agent: fork: %s\n", std::strerror(errno));
  }
}
