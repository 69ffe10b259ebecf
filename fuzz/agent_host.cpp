// The host's agent client on an arbitrary byte stream from the agent: the
// first byte picks the operation (ping, info, exec, read_file, write_file),
// the rest is everything the "agent" sends. Inputs are small, so the whole
// stream fits a socket pair's buffer and no thread is needed; the stream
// ends at EOF, so nothing waits for a timeout.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstddef>

#include "agent/hostvisor_agent_client.h"

using namespace hostvisor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  const uint8_t op = data[0] % 5;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  int buffer = 1 << 20;
  ::setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  ::setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  if (::send(sv[1], data + 1, size - 1, MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(size - 1)) {
    ::close(sv[0]);
    ::close(sv[1]);
    return 0;
  }
  ::shutdown(sv[1], SHUT_WR);
  bool used = false;
  agent::HostvisorAgentClient client(
      [&]() -> Result<UniqueFd> {
        if (used) return Error(ErrorCode::kIo, "one connection per input");
        used = true;
        return UniqueFd(sv[0]);
      },
      std::chrono::milliseconds(100));
  static const int sink = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  switch (op) {
    case 0:
      (void)client.ping();
      break;
    case 1:
      (void)client.info();
      break;
    case 2: {
      agent::ExecStreams streams;
      streams.on_stdout = [](std::span<const uint8_t>) {};
      streams.on_stderr = [](std::span<const uint8_t>) {};
      (void)client.exec({.argv = {"true"}}, streams);
      break;
    }
    case 3:
      (void)client.read_file("/f", sink);
      break;
    case 4: {
      const int source = ::memfd_create("fuzz-source", MFD_CLOEXEC);
      (void)!::write(source, "abc", 3);
      ::lseek(source, 0, SEEK_SET);
      (void)client.write_file("/f", source, {});
      ::close(source);
      break;
    }
  }
  if (!used) ::close(sv[0]);
  ::close(sv[1]);
  return 0;
}
