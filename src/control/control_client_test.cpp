// The client against a tiny scripted server on a real unix socket.
#include "control/control_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

namespace hostvisor::control {
namespace {

class FakeServer {
 public:
  // `script` gets the accepted connection's fd.
  explicit FakeServer(std::function<void(int)> script) {
    path_ = (std::filesystem::temp_directory_path() / ("hv-ctl-test-" + std::to_string(::getpid()) + ".sock")).string();
    ::unlink(path_.c_str());
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener_.get(), 4), 0);
    thread_ = std::thread([this, script = std::move(script)] {
      UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.valid()) script(conn.get());
    });
  }
  ~FakeServer() {
    thread_.join();
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  static json read_request(int fd) {
    std::string line;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
    return json::parse(line);
  }
  static void send(int fd, const std::string& text) {
    ASSERT_EQ(::write(fd, text.data(), text.size()), ssize_t(text.size()));
  }

 private:
  std::string path_;
  UniqueFd listener_;
  std::thread thread_;
};

TEST(ControlClient, CallGetsTheResultOrTheServersError) {
  FakeServer server([](int fd) {
    json request = FakeServer::read_request(fd);
    EXPECT_EQ(request["op"], "info");
    EXPECT_EQ(request["verbose"], true);
    FakeServer::send(fd, ok_reply(request["id"], {{"state", "running"}}));
    request = FakeServer::read_request(fd);
    FakeServer::send(fd, error_reply(request["id"], WireError::kNotSupported, "this VM has no balloon"));
  });
  auto client = ControlClient::connect(server.path());
  ASSERT_TRUE(client) << client.error().message();
  auto info = client->call("info", {{"verbose", true}});
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ((*info)["state"], "running");
  auto balloon = client->call("balloon-set", {{"bytes", 1}});
  ASSERT_FALSE(balloon);
  EXPECT_EQ(balloon.error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(balloon.error().message(), "this VM has no balloon");
}

TEST(ControlClient, EventsBetweenRepliesAreKeptInOrder) {
  FakeServer server([](int fd) {
    json request = FakeServer::read_request(fd);
    FakeServer::send(fd, ok_reply(request["id"], {}) + event_line({{"event", "state"}, {"state", "running"}}));
    request = FakeServer::read_request(fd);
    // An event arrives before the reply to pause.
    FakeServer::send(fd, event_line({{"event", "state"}, {"state", "paused"}}) + ok_reply(request["id"], {}));
    char byte;
    (void)::read(fd, &byte, 1);  // open until the client is done
  });
  auto client = ControlClient::connect(server.path());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->subscribe());
  ASSERT_TRUE(client->call("pause"));
  auto first = client->next_event(std::chrono::seconds(5));
  ASSERT_TRUE(first && *first);
  EXPECT_EQ((**first)["state"], "running");
  auto second = client->next_event(std::chrono::seconds(5));
  ASSERT_TRUE(second && *second);
  EXPECT_EQ((**second)["state"], "paused");
  auto none = client->next_event(std::chrono::milliseconds(50));
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(*none);
  ::shutdown(client->fd(), SHUT_WR);
}

TEST(ControlClient, ConsoleBytesRightAfterTheReplyStayInTheStream) {
  FakeServer server([](int fd) {
    json request = FakeServer::read_request(fd);
    EXPECT_EQ(request["op"], "console");
    EXPECT_EQ(request["replay"], true);
    FakeServer::send(fd, ok_reply(request["id"], {}) + "login: ");
    char buffer[16];
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    FakeServer::send(fd, std::string(buffer, n > 0 ? size_t(n) : 0));  // echo
  });
  auto client = ControlClient::connect(server.path());
  ASSERT_TRUE(client);
  auto console = client->attach_console(true);
  ASSERT_TRUE(console) << console.error().message();
  char buffer[16];
  ASSERT_EQ(::read(console->get(), buffer, 7), 7);
  EXPECT_EQ(std::string(buffer, 7), "login: ");
  ASSERT_EQ(::write(console->get(), "ls\n", 3), 3);
  ASSERT_EQ(::read(console->get(), buffer, 3), 3);
  EXPECT_EQ(std::string(buffer, 3), "ls\n");
  EXPECT_FALSE(client->call("info"));  // the connection went to the console
}

TEST(ControlClient, AVanishedVmIsNotFound) {
  auto client = ControlClient::connect("/nonexistent/hostvisor-control.sock");
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), ErrorCode::kNotFound);
}

TEST(ControlClient, AClosedConnectionIsAnError) {
  FakeServer server([](int fd) { FakeServer::read_request(fd); });
  auto client = ControlClient::connect(server.path());
  ASSERT_TRUE(client);
  auto reply = client->call("quit");
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kIo);
}

}  // namespace
}  // namespace hostvisor::control
