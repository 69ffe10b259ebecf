// A vsock echo server and client for the Linux guest tests, run inside the
// default guest (busybox has no vsock tool). Linked statically, so it needs
// nothing from the initramfs; the test hands it to the guest on a raw disk.
//
//   guest_vsock_echo serve PORT      listen on vsock PORT; every stream's
//                                    bytes go back as they come, many streams
//                                    at once (one poll loop); at the client's
//                                    end of stream the server closes. Detaches
//                                    once listening (exit 0: it is up).
//   guest_vsock_echo send PORT TEXT  connect to the host (CID 2) port PORT,
//                                    send TEXT, end the stream's sending side
//                                    and print what comes back until the host
//                                    closes.
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

sockaddr_vm vsock_address(unsigned cid, unsigned port) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  return addr;
}

struct Stream {
  int fd;
  std::string pending;  // read, not yet echoed
  size_t echoed = 0;
  bool eof = false;
};

int serve(unsigned port) {
  const int listener = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  const sockaddr_vm addr = vsock_address(VMADDR_CID_ANY, port);
  if (listener < 0 || ::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0 ||
      ::listen(listener, 256) < 0) {
    std::perror("guest_vsock_echo: listening");
    return 1;
  }
  const pid_t child = ::fork();
  if (child < 0) return 1;
  if (child > 0) return 0;
  ::setsid();
  std::vector<Stream> streams;
  std::vector<pollfd> fds;
  char buf[65536];
  for (;;) {
    fds.assign(1, pollfd{listener, POLLIN, 0});
    for (const Stream& s : streams)
      fds.push_back(pollfd{s.fd, static_cast<short>(s.pending.size() > s.echoed ? POLLOUT : (s.eof ? 0 : POLLIN)), 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents & POLLIN) {
      for (int fd; (fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0;)
        streams.push_back(Stream{fd, {}, 0, false});
    }
    for (size_t i = 0; i + 1 < fds.size(); ++i) {
      Stream& s = streams[i];
      if (fds[i + 1].revents == 0) continue;
      if (s.pending.size() > s.echoed) {
        const ssize_t n = ::write(s.fd, s.pending.data() + s.echoed, s.pending.size() - s.echoed);
        if (n > 0) s.echoed += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) s.eof = true, s.pending.clear(), s.echoed = 0;
        if (s.echoed == s.pending.size()) s.pending.clear(), s.echoed = 0;
      } else if (!s.eof) {
        const ssize_t n = ::read(s.fd, buf, sizeof buf);
        if (n > 0) s.pending.assign(buf, static_cast<size_t>(n));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) s.eof = true;
      }
    }
    // A stream read to its end with nothing left to echo is done.
    for (size_t i = streams.size(); i-- > 0;) {
      if (streams[i].eof && streams[i].pending.empty()) {
        ::close(streams[i].fd);
        streams.erase(streams.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  }
}

int send(unsigned port, const std::string& text) {
  const int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_vm addr = vsock_address(VMADDR_CID_HOST, port);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
    std::perror("guest_vsock_echo: connecting to the host");
    return 1;
  }
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::shutdown(fd, SHUT_WR) < 0) {
    std::perror("guest_vsock_echo: sending");
    return 1;
  }
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) std::fwrite(buf, 1, static_cast<size_t>(n), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "serve") == 0) return serve(static_cast<unsigned>(std::atoi(argv[2])));
  if (argc == 4 && std::strcmp(argv[1], "send") == 0) return send(static_cast<unsigned>(std::atoi(argv[2])), argv[3]);
  std::fprintf(stderr, "usage: %s serve PORT | send PORT TEXT\n", argv[0]);
  return 2;
}
