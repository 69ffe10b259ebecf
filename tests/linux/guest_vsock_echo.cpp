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
//   guest_vsock_echo cid             print the guest's own CID (what the
//                                    driver read from the device's config).
//
// And for bench/agent.bench.sh's throughput figures, one stream at a time:
//   guest_vsock_echo sink PORT       read each stream to its end, answer the
//                                    byte count ("N\n") and close.
//   guest_vsock_echo source PORT     read a line "N\n" from each stream, send
//                                    N bytes and close.
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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

// Listens on vsock `port` and detaches: returns the listener in the child,
// -1 in the parent (which then exits 0: the port is bound) or on failure.
int listen_and_detach(unsigned port, int flags, int* status) {
  const int listener = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  const sockaddr_vm addr = vsock_address(VMADDR_CID_ANY, port);
  *status = 1;
  if (listener < 0 || ::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0 ||
      ::listen(listener, 256) < 0) {
    std::perror("guest_vsock_echo: listening");
    return -1;
  }
  const pid_t child = ::fork();
  if (child < 0) return -1;
  *status = 0;
  if (child > 0) return -1;
  ::setsid();
  return listener;
}

bool write_all(int fd, const char* data, size_t size) {
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

int sink(unsigned port) {
  int status;
  const int listener = listen_and_detach(port, 0, &status);
  if (listener < 0) return status;
  static char buf[1 << 16];
  for (;;) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    size_t total = 0;
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) total += static_cast<size_t>(n);
    const std::string count = std::to_string(total) + "\n";
    write_all(fd, count.data(), count.size());
    ::close(fd);
  }
}

int source(unsigned port) {
  int status;
  const int listener = listen_and_detach(port, 0, &status);
  if (listener < 0) return status;
  static char buf[1 << 16];
  std::memset(buf, 'v', sizeof buf);
  for (;;) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::string line;
    char c;
    while (line.size() < 24 && ::read(fd, &c, 1) == 1 && c != '\n') line += c;
    for (size_t left = std::strtoull(line.c_str(), nullptr, 10); left > 0;) {
      const size_t n = std::min(left, sizeof buf);
      if (!write_all(fd, buf, n)) break;
      left -= n;
    }
    ::close(fd);
  }
}

int serve(unsigned port) {
  int status;
  const int listener = listen_and_detach(port, SOCK_NONBLOCK, &status);
  if (listener < 0) return status;
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

int print_cid() {
  const int fd = ::open("/dev/vsock", O_RDONLY | O_CLOEXEC);
  unsigned cid = 0;
  if (fd < 0 || ::ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0) {
    std::perror("guest_vsock_echo: /dev/vsock");
    return 1;
  }
  std::printf("%u\n", cid);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "serve") == 0) return serve(static_cast<unsigned>(std::atoi(argv[2])));
  if (argc == 2 && std::strcmp(argv[1], "cid") == 0) return print_cid();
  if (argc == 3 && std::strcmp(argv[1], "sink") == 0) return sink(static_cast<unsigned>(std::atoi(argv[2])));
  if (argc == 3 && std::strcmp(argv[1], "source") == 0) return source(static_cast<unsigned>(std::atoi(argv[2])));
  if (argc == 4 && std::strcmp(argv[1], "send") == 0) return send(static_cast<unsigned>(std::atoi(argv[2])), argv[3]);
  std::fprintf(stderr, "usage: %s serve PORT | send PORT TEXT | sink PORT | source PORT | cid\n", argv[0]);
  return 2;
}
