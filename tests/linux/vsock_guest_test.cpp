// virtio-vsock on the default guest (one boot, software CPU): the guest's
// vsock modules bind the device, 100 host-initiated streams at once each
// echo 1 MiB intact through a guest echo server (CONNECT/OK on the unix
// socket), and a guest-initiated stream reaches a host listener at PATH_P.
// Then a snapshot of the running guest is restored as a clone on a socket
// and CID of its own: the guest reads the new CID after the device's
// TRANSPORT_RESET and its echo server, still listening, serves the clone's
// streams while the original goes on serving its own.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};
constexpr seconds kCommandTimeout{60};
constexpr seconds kShutdownTimeout{90};
constexpr seconds kEchoTimeout{600};  // 100 MiB each way through the software CPU
// The guest's echo server; not 1024, where the default guest's agent listens.
constexpr uint32_t kEchoPort = 5005;
const std::regex kBanner(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\. Type 'poweroff' to stop\.)");

int unix_connect(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// One host-initiated stream of the echo check, driven from one poll loop.
struct EchoClient {
  int fd = -1;
  std::string expected;  // what it sends and must get back
  std::string line;      // the OK line as it comes
  bool accepted = false;
  size_t sent = 0;
  std::string received;
  bool done = false;
  std::string failure;
};

// Opens `count` streams to guest port `port` through `uds` at once, sends
// each `bytes` of its own data and reads the echo back to the guest's end
// of stream. Returns the failures (empty: all intact) and the seconds taken.
std::vector<std::string> echo_streams(const std::string& uds, uint32_t port, int count, size_t bytes,
                                      double* seconds_taken) {
  std::vector<EchoClient> clients(count);
  std::mt19937_64 random(2026);
  for (int i = 0; i < count; ++i) {
    EchoClient& c = clients[i];
    c.expected.resize(bytes);
    for (char& b : c.expected) b = static_cast<char>(random());
    c.fd = unix_connect(uds);
    const std::string connect = "CONNECT " + std::to_string(port) + "\n";
    if (c.fd < 0 || ::write(c.fd, connect.data(), connect.size()) != static_cast<ssize_t>(connect.size())) {
      c.failure = "stream " + std::to_string(i) + ": cannot connect to " + uds;
      c.done = true;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + kEchoTimeout;
  std::vector<pollfd> fds;
  std::vector<size_t> index;
  char buf[65536];
  for (;;) {
    fds.clear();
    index.clear();
    for (size_t i = 0; i < clients.size(); ++i) {
      const EchoClient& c = clients[i];
      if (c.done) continue;
      fds.push_back({c.fd, static_cast<short>(POLLIN | (c.accepted && c.sent < bytes ? POLLOUT : 0)), 0});
      index.push_back(i);
    }
    if (fds.empty() || std::chrono::steady_clock::now() > deadline) break;
    if (::poll(fds.data(), fds.size(), 1000) < 0) break;
    for (size_t k = 0; k < fds.size(); ++k) {
      EchoClient& c = clients[index[k]];
      const std::string name = "stream " + std::to_string(index[k]);
      if (fds[k].revents & POLLOUT) {
        const size_t chunk = std::min<size_t>(bytes - c.sent, 65536);
        const ssize_t n = ::send(c.fd, c.expected.data() + c.sent, chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) c.sent += static_cast<size_t>(n);
        if (c.sent == bytes) ::shutdown(c.fd, SHUT_WR);
      }
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) continue;
      if (n == 0) {
        c.done = true;
        if (!c.accepted)
          c.failure = name + ": closed before OK (the guest refused?)";
        else if (c.received != c.expected)
          c.failure = name + ": got back " + std::to_string(c.received.size()) + " bytes, " +
                      (c.received == c.expected.substr(0, c.received.size()) ? "a true prefix" : "differing");
        continue;
      }
      std::string_view data(buf, static_cast<size_t>(n));
      if (!c.accepted) {
        const size_t newline = data.find('\n');
        c.line.append(data.substr(0, newline));
        if (newline == std::string_view::npos) continue;
        if (!std::regex_match(c.line, std::regex("OK [0-9]+"))) {
          c.failure = name + ": expected OK <port>, got '" + c.line + "'";
          c.done = true;
          continue;
        }
        c.accepted = true;
        data.remove_prefix(newline + 1);
      }
      c.received.append(data);
    }
  }
  *seconds_taken = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<std::string> failures;
  for (size_t i = 0; i < clients.size(); ++i) {
    if (!clients[i].done) failures.push_back("stream " + std::to_string(i) + ": not finished in time");
    if (!clients[i].failure.empty()) failures.push_back(clients[i].failure);
    if (clients[i].fd >= 0) ::close(clients[i].fd);
  }
  return failures;
}

TEST(LinuxGuestVsock, HundredStreamsEchoTheGuestReachesAHostListenerAndACloneGetsItsOwnSocketAndCid) {
  ScratchDir scratch{"vsock-test"};
  ASSERT_FALSE(scratch.path.empty());
  // The guest's echo program on a raw disk: the guest copies it off /dev/vda.
  std::ifstream program(GUEST_VSOCK_ECHO_PATH, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(program)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(bytes.empty());
  const size_t program_size = bytes.size();
  bytes.resize((bytes.size() + 511) / 512 * 512, '\0');
  const fs::path disk = scratch.path / "echo.img";
  std::ofstream(disk, std::ios::binary) << bytes;
  const std::string uds = (scratch.path / "vsock.sock").string();
  const fs::path snapshot = scratch.path / "snapshot";

  // A host listener for the guest's connection to port 5000: it answers
  // what it read with a line of its own.
  const std::string listener_path = uds + "_5000";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  listener_path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  std::thread host_listener([listener] {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, 300000) != 1) return;
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    std::string got;
    char buf[256];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
    const std::string reply = "host listener got '" + got + "'";
    (void)!::write(fd, reply.data(), reply.size());
    ::close(fd);
  });
  struct Joiner {
    std::thread& thread;
    int listener;
    ~Joiner() {
      ::shutdown(listener, SHUT_RDWR);
      thread.join();
      ::close(listener);
    }
  } joiner{host_listener, listener};

  GuestConsole console;
  ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--memory", "512M", "--net", "none", "--disk",
                             disk.string() + ",format=raw,readonly=on", "--vsock", "cid=7,uds=" + uds, "--snapshot-dir",
                             snapshot.string()}))
      << console.failure();
  auto banner = console.wait_for_regex(kBanner, kBootTimeout);
  ASSERT_TRUE(banner) << console.failure();

  // The device is bound by the guest's virtio vsock transport.
  EXPECT_NE(guest_ok(console, "ls /sys/bus/virtio/drivers/vmw_vsock_virtio_transport/").find("virtio"),
            std::string::npos);
  guest_ok(console,
           "head -c " + std::to_string(program_size) +
               " /dev/vda > /tmp/vecho && chmod +x /tmp/vecho && /tmp/vecho serve " + std::to_string(kEchoPort) + " </dev/null >/dev/null 2>&1");

  // Guest to host: a stream to host port 5000 reaches the listener at PATH_5000.
  EXPECT_EQ(guest_ok(console, "/tmp/vecho send 5000 hello-from-the-guest"), "host listener got 'hello-from-the-guest'");
  // Nobody at PATH_5001: the guest's connect is refused.
  auto refused = console.run("/tmp/vecho send 5001 x", kCommandTimeout);
  ASSERT_TRUE(refused) << console.failure();
  EXPECT_NE(refused->status, 0) << refused->output;

  // Host to guest: 100 streams at once, 1 MiB each, echoed intact.
  double seconds_taken = 0;
  const auto failures = echo_streams(uds, kEchoPort, 100, 1 << 20, &seconds_taken);
  std::string all;
  for (size_t i = 0; i < failures.size() && i < 10; ++i) all += failures[i] + "\n";
  EXPECT_TRUE(failures.empty()) << failures.size() << " of 100 streams failed:\n" << all;
  std::printf("100 vsock streams x 1 MiB echoed in %.1f s (%.1f MB/s each way)\n", seconds_taken,
              100.0 * (1 << 20) / 1e6 / seconds_taken);

  // A CONNECT to a port nobody listens on in the guest is closed without OK.
  double unused = 0;
  const auto nobody = echo_streams(uds, 1025, 1, 16, &unused);
  ASSERT_EQ(nobody.size(), 1u);
  EXPECT_NE(nobody[0].find("closed before OK"), std::string::npos) << nobody[0];

  // A snapshot of the running guest; the original goes on.
  EXPECT_EQ(guest_ok(console, "/tmp/vecho cid"), "7\n");
  // At the prompt, so hostvisor's line does not land inside it; then a
  // fresh prompt after that line for the next command.
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_keys("\x01s")) << console.failure();
  ASSERT_TRUE(console.wait_for_regex(std::regex(R"(\[hostvisor: snapshot written to [^\]]*\])"), kCommandTimeout))
      << console.failure();
  ASSERT_TRUE(console.send_line("")) << console.failure();
  {
    const std::string clone_uds = (scratch.path / "clone.sock").string();
    GuestConsole clone;
    ASSERT_TRUE(clone.start(
        {HOSTVISOR_PATH, "run", "--restore", snapshot.string(), "--clone", "--vsock", "cid=8,uds=" + clone_uds}))
        << clone.failure();
    // The snapshot was taken at a prompt the clone's screen never saw: ask for another.
    ASSERT_TRUE(clone.send_line("")) << clone.failure();
    EXPECT_EQ(guest_ok(clone, "/tmp/vecho cid"), "8\n") << "the clone's guest did not take its new CID";
    const auto clone_failures = echo_streams(clone_uds, kEchoPort, 4, 64 << 10, &unused);
    EXPECT_TRUE(clone_failures.empty()) << clone_failures.front();
    const auto original_failures = echo_streams(uds, kEchoPort, 4, 64 << 10, &unused);
    EXPECT_TRUE(original_failures.empty()) << original_failures.front();
    EXPECT_EQ(guest_ok(console, "/tmp/vecho cid"), "7\n");
    ASSERT_TRUE(clone.wait_for_text("/ # ", kCommandTimeout)) << clone.failure();
    ASSERT_TRUE(clone.send_line("poweroff")) << clone.failure();
    const auto status = clone.wait_exit(kShutdownTimeout);
    ASSERT_TRUE(status) << "the clone after poweroff: " << clone.failure();
    EXPECT_EQ(*status, 0) << clone.err();
  }

  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(kShutdownTimeout);
  ASSERT_TRUE(status) << "after poweroff: " << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
  EXPECT_FALSE(fs::exists(uds)) << "hostvisor removes its socket when it ends";
}

}  // namespace
}  // namespace hostvisor::testing
