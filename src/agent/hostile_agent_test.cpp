// The host client against an agent that lies: each test scripts what a
// hostile agent sends and checks the client refuses it with an error rather
// than trusting it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "agent/agent_connection.h"
#include "agent/hostvisor_agent_client.h"
#include "agent/protocol/frame.h"

namespace hostvisor::agent {
namespace {

using namespace std::chrono_literals;
using protocol::encode_data_frame;
using protocol::encode_json_frame;
using protocol::Stream;

const std::string kHello = encode_json_frame(R"({"agent":"hostvisor-agent","version":"x","protocol":1})");

// A fake agent: the client gets one end of a socket pair, a thread writes
// `script` to the other, then drains and closes it.
class ScriptedAgent {
 public:
  explicit ScriptedAgent(std::string script) : script_(std::move(script)) {}
  ~ScriptedAgent() {
    if (thread_.joinable()) thread_.join();
  }
  AgentConnector connector() {
    return [this]() -> Result<UniqueFd> {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Error::from_errno("socketpair");
      thread_ = std::thread([fd = sv[1], script = script_] {
        size_t done = 0;
        while (done < script.size()) {
          const ssize_t n = ::send(fd, script.data() + done, script.size() - done, MSG_NOSIGNAL);
          if (n <= 0) break;
          done += static_cast<size_t>(n);
        }
        ::shutdown(fd, SHUT_WR);
        char buf[4096];
        while (::read(fd, buf, sizeof(buf)) > 0) {
        }
        ::close(fd);
      });
      return UniqueFd(sv[0]);
    };
  }

 private:
  std::string script_;
  std::thread thread_;
};

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(HostileAgent, ANewerProtocolIsRefusedWithAHint) {
  ScriptedAgent agent(encode_json_frame(R"({"agent":"hostvisor-agent","protocol":2})"));
  HostvisorAgentClient client(agent.connector(), 2s);
  auto r = client.ping();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(r.error().message().find("update the guest's agent"), std::string::npos);
}

TEST(HostileAgent, APeerThatIsNotTheAgentIsRefused) {
  ScriptedAgent agent(encode_json_frame(R"({"agent":"something-else","protocol":1})"));
  HostvisorAgentClient client(agent.connector(), 2s);
  EXPECT_FALSE(client.ping().ok());
}

TEST(HostileAgent, AGiantFrameLengthIsRefusedFromItsHeader) {
  ScriptedAgent agent(kHello + std::string("\x7f\xff\xff\xff\x01", 5));
  HostvisorAgentClient client(agent.connector(), 2s);
  auto r = client.ping();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("over the limit"), std::string::npos) << r.error().message();
}

TEST(HostileAgent, ReadFileRefusesMoreDataThanAnnounced) {
  ScriptedAgent agent(kHello + encode_json_frame(R"({"ok":true,"mode":420,"mtime_ns":0,"size":4})") +
                      encode_data_frame(Stream::kStdout, bytes("12345678")) + encode_data_frame(Stream::kStdout, {}) +
                      encode_json_frame(R"({"ok":true})"));
  HostvisorAgentClient client(agent.connector(), 2s);
  const int fd = ::open("/dev/null", O_WRONLY);
  auto r = client.read_file("/x", fd);
  ::close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("more data than"), std::string::npos) << r.error().message();
}

TEST(HostileAgent, ReadFileRefusesAShortFileAndBadAttributes) {
  {
    ScriptedAgent agent(kHello + encode_json_frame(R"({"ok":true,"mode":420,"mtime_ns":0,"size":9})") +
                        encode_data_frame(Stream::kStdout, bytes("123")) + encode_data_frame(Stream::kStdout, {}) +
                        encode_json_frame(R"({"ok":true})"));
    HostvisorAgentClient client(agent.connector(), 2s);
    const int fd = ::open("/dev/null", O_WRONLY);
    EXPECT_FALSE(client.read_file("/x", fd).ok());
    ::close(fd);
  }
  {
    ScriptedAgent agent(kHello + encode_json_frame(R"({"ok":true,"mode":99999,"mtime_ns":0,"size":0})"));
    HostvisorAgentClient client(agent.connector(), 2s);
    const int fd = ::open("/dev/null", O_WRONLY);
    EXPECT_FALSE(client.read_file("/x", fd).ok());
    ::close(fd);
  }
}

TEST(HostileAgent, ExecRefusesUnknownEventsBadStatusesAndAnEarlyClose) {
  for (const std::string& tail :
       {encode_json_frame(R"({"event":"surprise"})"), encode_json_frame(R"({"event":"exit","exit_code":999})"),
        encode_data_frame(Stream::kStdin, bytes("x")), std::string()}) {
    ScriptedAgent agent(kHello + encode_json_frame(R"({"ok":true,"pid":1})") +
                        encode_data_frame(Stream::kStdout, bytes("out")) + tail);
    HostvisorAgentClient client(agent.connector(), 2s);
    ExecStreams streams;
    std::string out;
    streams.on_stdout = [&](std::span<const uint8_t> b) {
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
    };
    auto r = client.exec({.argv = {"true"}}, streams);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(out, "out");
  }
}

TEST(HostileAgent, ExecTakesAnExitThatArrivesWithTheClose) {
  ScriptedAgent agent(kHello + encode_json_frame(R"({"ok":true,"pid":1})") +
                      encode_data_frame(Stream::kStderr, bytes("e")) +
                      encode_json_frame(R"({"event":"exit","signal":9})"));
  HostvisorAgentClient client(agent.connector(), 2s);
  ExecStreams streams;
  auto r = client.exec({.argv = {"true"}}, streams);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->status(), 128 + 9);
}

TEST(HostileAgent, InfoRefusesWrongTypesAndEndlessLists) {
  std::string many = R"({"ok":true,"filesystems":[)";
  for (int i = 0; i < 300; ++i) many += std::string(i ? "," : "") + "{}";
  many += "]}";
  for (const std::string& reply :
       {std::string(R"({"ok":true,"kernel_release":5})"), std::string(R"({"ok":true,"memory_total_bytes":-1})"), many,
        std::string(R"({"ok":true,"interfaces":[{"addresses":[1]}]})")}) {
    ScriptedAgent agent(kHello + encode_json_frame(reply));
    HostvisorAgentClient client(agent.connector(), 2s);
    EXPECT_FALSE(client.info().ok()) << reply.substr(0, 80);
  }
}

TEST(HostileAgent, AnAgentThatHangsUpWithoutAReplyFails) {
  ScriptedAgent agent(kHello);
  HostvisorAgentClient client(agent.connector(), 200ms);
  auto r = client.ping();
  ASSERT_FALSE(r.ok());
}

// A vsock device's host socket (Firecracker's protocol) that answers one
// CONNECT line with `answer` and then closes: what the host side sees when
// the guest refuses the connection (RST before OK: no answer) or resets it
// after accepting (OK, then the close).
class FakeVsockDevice {
 public:
  explicit FakeVsockDevice(std::string answer) {
    char dir[] = "/tmp/hv-fake-vsock-XXXXXX";
    if (::mkdtemp(dir)) dir_ = dir;
    path_ = dir_ + "/vsock.sock";
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    ok_ = ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
          ::listen(listener_.get(), 1) == 0;
    thread_ = std::thread([this, answer = std::move(answer)] {
      UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd.valid()) return;
      char c;
      while (::read(fd.get(), &c, 1) == 1 && c != '\n') line_.push_back(c);
      (void)!::write(fd.get(), answer.data(), answer.size());
    });
  }
  ~FakeVsockDevice() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  bool ok() const { return ok_; }
  const std::string& path() const { return path_; }
  // The CONNECT line the client sent (after the thread is done).
  std::string line() {
    if (thread_.joinable()) thread_.join();
    return line_;
  }

 private:
  std::string dir_, path_, line_;
  UniqueFd listener_;
  bool ok_ = false;
  std::thread thread_;
};

TEST(VsockConnector, AGuestRefusalSaysNothingListensOnThePort) {
  FakeVsockDevice device("");
  ASSERT_TRUE(device.ok());
  auto fd = vsock_connector(device.path(), 1024)();
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(fd.error().message().find("nothing listens on guest port 1024"), std::string::npos) << fd.error().message();
  EXPECT_EQ(device.line(), "CONNECT 1024");
}

// A stream the guest reset after accepting it ends the client's wait for
// the agent's hello at the close, with an error that says so (not the
// client's timeout: it is set far beyond what the test waits).
TEST(VsockConnector, AStreamResetAfterOkEndsTheWaitForTheHello) {
  FakeVsockDevice device("OK 1073741824\n");
  ASSERT_TRUE(device.ok());
  HostvisorAgentClient client(vsock_connector(device.path(), 1024), 3600s);
  auto r = client.ping();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("no hello"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("closed by the peer"), std::string::npos) << r.error().message();
}

}  // namespace
}  // namespace hostvisor::agent
