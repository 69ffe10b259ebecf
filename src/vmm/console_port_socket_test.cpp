// The --qga socket's host end on a real event loop: a client's bytes reach
// the port, the guest's reach the client, one client at a time, and the
// port's host end follows the client.
#include "vmm/console_port_socket.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

namespace hostvisor {
namespace {

UniqueFd connect_to(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  return fd;
}

template <typename Condition>
bool eventually(Condition condition) {
  for (int i = 0; i < 500; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

class ConsolePortSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path = (std::filesystem::temp_directory_path() / ("hv-qga-" + std::to_string(::getpid()) + ".sock")).string();
    auto made = ConsolePortSocket::listen(path);
    ASSERT_TRUE(made.ok()) << made.error().message();
    socket = std::move(*made);
    std::vector<VirtioConsole::NamedPort> ports;
    ports.push_back({"org.qemu.guest_agent.0", socket->sink(), nullptr, 16});
    console = std::move(VirtioConsole::create(VirtioConsole::OutputSink(), 64, std::move(ports))).value();
    loop = std::move(EventLoop::create()).value();
    ASSERT_TRUE(socket->attach(*loop, console, 1).ok());
    loop->start();
  }
  void TearDown() override {
    loop->stop();
    socket.reset();
    EXPECT_FALSE(std::filesystem::exists(path)) << "the socket file is removed";
  }
  std::string path;
  std::unique_ptr<ConsolePortSocket> socket;
  std::shared_ptr<VirtioConsole> console;
  std::unique_ptr<EventLoop> loop;
};

TEST_F(ConsolePortSocketTest, OneClientAtATimeOpensTheHostEnd) {
  EXPECT_FALSE(console->host_open(1));
  UniqueFd client = connect_to(path);
  ASSERT_TRUE(eventually([&] { return console->host_open(1); }));
  // Client bytes wait in the port (no driver here), up to its capacity; the
  // rest stays in the socket.
  ASSERT_EQ(::send(client.get(), "0123456789abcdefXYZ", 19, 0), 19);
  ASSERT_TRUE(eventually([&] { return console->input_pending(1) == 16; }));
  // The guest's bytes reach the client.
  const std::string reply = "{\"return\": {}}\n";
  ASSERT_TRUE(socket->sink()(std::span(reinterpret_cast<const uint8_t*>(reply.data()), reply.size())));
  char got[64] = {};
  ASSERT_EQ(::recv(client.get(), got, sizeof got, 0), static_cast<ssize_t>(reply.size()));
  EXPECT_EQ(std::string(got), reply);
  // A second client is turned away: its connection ends.
  UniqueFd second = connect_to(path);
  pollfd p{second.get(), POLLIN, 5000};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  EXPECT_EQ(::recv(second.get(), got, sizeof got, 0), 0);
  // The first leaves: the host end closes and its unread input goes.
  client = UniqueFd();
  ASSERT_TRUE(eventually([&] { return !console->host_open(1); }));
  EXPECT_EQ(console->input_pending(1), 0u);
  EXPECT_FALSE(socket->sink()(std::span(reinterpret_cast<const uint8_t*>(reply.data()), reply.size())))
      << "no client: the output is the device's to drop";
  // And the next client gets the port.
  UniqueFd third = connect_to(path);
  ASSERT_TRUE(eventually([&] { return console->host_open(1); }));
}

// The guest's output to a client that does not read: once the socket's
// buffer is full the sink refuses at once (the device drops and counts it),
// so the thread that runs the device never waits and nothing piles up here.
TEST_F(ConsolePortSocketTest, AClientThatDoesNotReadIsNeverWaitedFor) {
  UniqueFd client = connect_to(path);
  ASSERT_TRUE(eventually([&] { return console->host_open(1); }));
  const std::vector<uint8_t> chunk(64 * 1024, 'x');
  auto sink = socket->sink();
  const auto start = std::chrono::steady_clock::now();
  size_t taken = 0, refused = 0;
  for (int i = 0; i < 256; ++i) (sink(chunk) ? taken : refused) += chunk.size();  // 16 MiB
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_GT(refused, 0u);
  // What was taken sits in the kernel's socket buffers (1 MiB asked for), not here.
  EXPECT_LE(taken, size_t{4} << 20);
}

TEST(ConsolePortSocket, RefusesAPathThatIsNotAStaleSocket) {
  const std::string file = (std::filesystem::temp_directory_path() / ("hv-qga-file-" + std::to_string(::getpid()))).string();
  { FILE* f = std::fopen(file.c_str(), "w"); std::fclose(f); }
  auto made = ConsolePortSocket::listen(file);
  ASSERT_FALSE(made.ok());
  EXPECT_NE(made.error().message().find("not a socket"), std::string::npos);
  std::filesystem::remove(file);
  // A live one is in use.
  const std::string live = file + ".sock";
  auto first = ConsolePortSocket::listen(live);
  ASSERT_TRUE(first.ok());
  auto second = ConsolePortSocket::listen(live);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message().find("in use"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor
