// An echo server for the Linux guest tests, run inside the default guest
// (which the test has it download from the host through the NAT): busybox's
// nc there has no UDP, and one process serving every TCP connection in turn
// keeps a thousand connections from costing a thousand fork+execs on the
// software CPU. Linked statically, so it needs nothing from the initramfs.
//
//   guest_echo_server TCP_PORT UDP_PORT
//
// UDP: every datagram goes back to its sender as it came. TCP: each
// connection's bytes, read to the client's end of stream, go back, then the
// connection is closed. It binds both ports, then detaches (the parent exits
// 0 only once the ports are bound, so the shell that started it knows the
// server is up) and serves until killed.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

int bound_socket(int type, int port) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return -1;
  if (type == SOCK_STREAM && ::listen(fd, 128) < 0) return -1;
  return fd;
}

void echo_datagram(int udp) {
  char buf[65536];
  sockaddr_storage from{};
  socklen_t from_length = sizeof from;
  const ssize_t n = ::recvfrom(udp, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_length);
  if (n >= 0) ::sendto(udp, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), from_length);
}

// One connection: read to end of stream (a client that stalls for 10 s is
// dropped, so one bad client cannot stop the server), write it all back.
void echo_connection(int listener) {
  const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  std::string data;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  for (size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s TCP_PORT UDP_PORT\n", argv[0]);
    return 2;
  }
  const int tcp = bound_socket(SOCK_STREAM, std::atoi(argv[1]));
  const int udp = bound_socket(SOCK_DGRAM, std::atoi(argv[2]));
  if (tcp < 0 || udp < 0) {
    std::perror("guest_echo_server: binding the ports");
    return 1;
  }
  const pid_t child = ::fork();
  if (child < 0) return 1;
  if (child > 0) return 0;
  ::setsid();
  for (;;) {
    pollfd fds[2] = {{tcp, POLLIN, 0}, {udp, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents & POLLIN) echo_datagram(udp);
    if (fds[0].revents & POLLIN) echo_connection(tcp);
  }
}
