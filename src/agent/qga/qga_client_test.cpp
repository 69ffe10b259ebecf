// QgaClient against a scripted qemu-guest-agent on the other end of a
// socketpair: the sync, each operation's requests, and hostile replies.
#include "agent/qga/qga_client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <thread>

#include "agent/qga/base64.h"

namespace hostvisor::agent::qga {
namespace {

using nlohmann::json;

// Answers requests like qemu-ga 7.2 does, unless `script` answers first
// (with raw bytes, so a test can send anything).
class FakeQga {
 public:
  using Script = std::function<std::optional<std::string>(const json& request)>;
  explicit FakeQga(Script script = {}) : script_(std::move(script)) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    client_end_ = UniqueFd(fds[0]);
    agent_end_ = UniqueFd(fds[1]);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeQga() {
    ::shutdown(agent_end_.get(), SHUT_RDWR);
    thread_.join();
  }
  AgentConnector connector() {
    return [this]() -> Result<UniqueFd> {
      if (!client_end_.valid()) return Error(ErrorCode::kIo, "no second connection");
      return std::move(client_end_);
    };
  }
  std::vector<json> requests;  // everything asked, after the client is done
  std::map<std::string, std::string> files;
  std::string stale_before_sync = "{\"return\": {\"stale\": 1}}\n";

 private:
  void reply(const std::string& bytes) { (void)::send(agent_end_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  static std::string ret(const json& value) { return json{{"return", value}}.dump() + "\n"; }
  void serve() {
    std::string buffer;
    char chunk[65536];
    while (true) {
      const ssize_t n = ::recv(agent_end_.get(), chunk, sizeof chunk, 0);
      if (n <= 0) return;
      buffer.append(chunk, static_cast<size_t>(n));
      size_t newline;
      while ((newline = buffer.find('\n')) != std::string::npos) {
        std::string line = buffer.substr(0, newline);
        buffer.erase(0, newline + 1);
        // 0xFF resets qemu-ga's parser (it answers with a parse error, which
        // comes before the sync's sentinel and is skipped).
        while (!line.empty() && static_cast<uint8_t>(line[0]) == 0xff) line.erase(0, 1);
        answer(json::parse(line));
      }
    }
  }
  void answer(const json& request) {
    requests.push_back(request);
    const std::string name = request["execute"];
    const json args = request.value("arguments", json::object());
    if (script_)
      if (auto scripted = script_(request)) return reply(*scripted);
    if (name == "guest-sync-delimited") return reply(stale_before_sync + "\xff" + ret(args["id"]));
    if (name == "guest-ping" || name == "guest-set-time") return reply(ret(json::object()));
    if (name == "guest-info") return reply(ret({{"version", "7.2.0"}, {"supported_commands", json::array()}}));
    if (name == "guest-get-osinfo")
      return reply(ret({{"kernel-release", "6.1.0-test"}, {"pretty-name", "Debian GNU/Linux 12 (bookworm)"}}));
    if (name == "guest-get-host-name") return reply(ret({{"host-name", "guest"}}));
    if (name == "guest-network-get-interfaces")
      return reply(ret(json::array({{{"name", "lo"}, {"ip-addresses", json::array({{{"ip-address", "127.0.0.1"}, {"prefix", 8}}})}}})));
    if (name == "guest-get-fsinfo")
      return reply("{\"error\": {\"class\": \"GenericError\", \"desc\": \"Command guest-get-fsinfo has been disabled\"}}\n");
    if (name == "guest-exec") return reply(ret({{"pid", 42}}));
    if (name == "guest-exec-status") {
      if (++status_polls_ < 3) return reply(ret({{"exited", false}}));
      return reply(ret({{"exited", true}, {"exitcode", 3}, {"out-data", base64_encode(std::vector<uint8_t>{'o', 'k', '\n'})},
                        {"err-data", base64_encode(std::vector<uint8_t>{'e'})}}));
    }
    if (name == "guest-file-open") {
      open_path_ = args["path"];
      read_at_ = 0;
      if (args["mode"] == "w") files[open_path_].clear();
      return reply(ret(1000));
    }
    if (name == "guest-file-write") {
      auto data = *base64_decode(args["buf-b64"].get<std::string>());
      files[open_path_].append(data.begin(), data.end());
      return reply(ret({{"count", data.size()}, {"eof", false}}));
    }
    if (name == "guest-file-read") {
      const std::string& file = files[open_path_];
      const size_t n = std::min<size_t>(args["count"].get<size_t>(), file.size() - read_at_);
      std::vector<uint8_t> data(file.begin() + static_cast<ptrdiff_t>(read_at_), file.begin() + static_cast<ptrdiff_t>(read_at_ + n));
      read_at_ += n;
      return reply(ret({{"count", n}, {"buf-b64", base64_encode(data)}, {"eof", read_at_ == file.size()}}));
    }
    if (name == "guest-file-close") return reply(ret(json::object()));
    if (name == "guest-shutdown") return;  // no answer on success
    reply("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"unknown\"}}\n");
  }

  Script script_;
  UniqueFd client_end_, agent_end_;
  std::thread thread_;
  std::string open_path_;
  size_t read_at_ = 0;
  int status_polls_ = 0;
};

TEST(QgaClient, SyncsOnceThenPingsSkippingStaleReplies) {
  FakeQga agent;
  {
    QgaClient client(agent.connector());
    ASSERT_TRUE(client.ping().ok());
    ASSERT_TRUE(client.ping().ok());
  }
  ASSERT_EQ(agent.requests.size(), 3u);
  EXPECT_EQ(agent.requests[0]["execute"], "guest-sync-delimited");
  EXPECT_EQ(agent.requests[1]["execute"], "guest-ping");
}

TEST(QgaClient, InfoGathersWhatTheAgentHasAndSkipsDisabledCommands) {
  FakeQga agent;
  QgaClient client(agent.connector());
  auto info = client.info();
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_EQ(info->agent, "qemu-guest-agent 7.2.0");
  EXPECT_EQ(info->kernel_release, "6.1.0-test");
  EXPECT_EQ(info->os, "Debian GNU/Linux 12 (bookworm)");
  EXPECT_EQ(info->hostname, "guest");
  ASSERT_EQ(info->interfaces.size(), 1u);
  EXPECT_EQ(info->interfaces[0].addresses, std::vector<std::string>{"127.0.0.1/8"});
  EXPECT_TRUE(info->filesystems.empty());
}

TEST(QgaClient, ExecSendsInputWholeAndReturnsOutputAndStatusAtTheEnd) {
  FakeQga agent;
  int input[2];
  ASSERT_EQ(::pipe(input), 0);
  ASSERT_EQ(::write(input[1], "data", 4), 4);
  ::close(input[1]);
  std::string out, err;
  ExecStreams streams;
  streams.stdin_fd = input[0];
  streams.on_stdout = [&](std::span<const uint8_t> b) { out.append(b.begin(), b.end()); };
  streams.on_stderr = [&](std::span<const uint8_t> b) { err.append(b.begin(), b.end()); };
  {
    QgaClient client(agent.connector());
    auto result = client.exec(ExecRequest{.argv = {"sh", "-c", "cat; exit 3"}, .env = {"A=b"}}, streams);
    ::close(input[0]);
    ASSERT_TRUE(result.ok()) << result.error().message();
    EXPECT_EQ(result->status(), 3);
  }
  EXPECT_EQ(out, "ok\n");
  EXPECT_EQ(err, "e");
  const json& exec = agent.requests[1];
  EXPECT_EQ(exec["execute"], "guest-exec");
  EXPECT_EQ(exec["arguments"]["path"], "sh");
  EXPECT_EQ(exec["arguments"]["arg"], json::array({"-c", "cat; exit 3"}));
  EXPECT_EQ(exec["arguments"]["env"], json::array({"A=b"}));
  EXPECT_EQ(exec["arguments"]["input-data"], "ZGF0YQ==");
  EXPECT_EQ(exec["arguments"]["capture-output"], true);
  EXPECT_EQ(agent.requests.back()["execute"], "guest-exec-status");
}

TEST(QgaClient, WhatQemuGaCannotDoSaysSo) {
  FakeQga agent;
  QgaClient client(agent.connector());
  ExecStreams streams;
  auto terminal = client.exec(ExecRequest{.argv = {"sh"}, .terminal = true}, streams);
  ASSERT_FALSE(terminal.ok());
  EXPECT_EQ(terminal.error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(terminal.error().message().rfind("not supported by qemu-guest-agent: a terminal", 0), 0u)
      << terminal.error().message();
  auto reseed = client.reseed_rng(std::vector<uint8_t>(32));
  ASSERT_FALSE(reseed.ok());
  EXPECT_EQ(reseed.error().code(), ErrorCode::kUnsupported);
  EXPECT_TRUE(agent.requests.empty()) << "nothing was sent for an unsupported request";
}

TEST(QgaClient, FilesGoInAndComeBackInChunks) {
  FakeQga agent;
  std::string content;
  for (size_t i = 0; i < 3 * QgaClient::kFileChunk + 123; ++i) content += static_cast<char>('a' + i % 26);
  int source[2];
  ASSERT_EQ(::pipe(source), 0);
  std::thread writer([&] {
    for (size_t at = 0; at < content.size();) at += static_cast<size_t>(::write(source[1], content.data() + at, content.size() - at));
    ::close(source[1]);
  });
  QgaClient client(agent.connector());
  auto wrote = client.write_file("/tmp/f", source[0], FileAttributes{});
  writer.join();
  ::close(source[0]);
  ASSERT_TRUE(wrote.ok()) << wrote.error().message();
  EXPECT_EQ(agent.files["/tmp/f"], content);

  FILE* copy = std::tmpfile();
  auto read = client.read_file("/tmp/f", fileno(copy));
  ASSERT_TRUE(read.ok()) << read.error().message();
  EXPECT_EQ(read->size, content.size());
  std::string back(content.size(), '\0');
  ASSERT_EQ(::pread(fileno(copy), back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, content);
  std::fclose(copy);
}

TEST(QgaClient, AReadReturningMoreThanAskedIsRefused) {
  FakeQga agent([](const json& request) -> std::optional<std::string> {
    if (request["execute"] != "guest-file-read") return std::nullopt;
    const std::vector<uint8_t> big(QgaClient::kFileChunk + 1, 'x');
    return json{{"return", {{"count", big.size()}, {"buf-b64", base64_encode(big)}, {"eof", false}}}}.dump() + "\n";
  });
  QgaClient client(agent.connector());
  FILE* copy = std::tmpfile();
  auto read = client.read_file("/etc/hostname", fileno(copy));
  std::fclose(copy);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code(), ErrorCode::kCorrupt);
}

TEST(QgaClient, AnEndlessReplyIsCutAtTheLimit) {
  FakeQga agent([](const json& request) -> std::optional<std::string> {
    if (request["execute"] != "guest-ping") return std::nullopt;
    return std::string(QgaClient::kMaxReply + 4096, ' ');  // and never a newline
  });
  QgaClient client(agent.connector());
  auto ping = client.ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_NE(ping.error().message().find("longer than"), std::string::npos) << ping.error().message();
}

TEST(QgaClient, ASilentAgentTimesOut) {
  FakeQga agent([](const json&) -> std::optional<std::string> { return std::string(); });
  QgaClient client(agent.connector(), std::chrono::milliseconds(200));
  const auto start = std::chrono::steady_clock::now();
  auto ping = client.ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_NE(ping.error().message().find("did not answer"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(QgaClient, ShutdownExpectsNoAnswerAndSetTimeSendsNanoseconds) {
  FakeQga agent;
  {
    QgaClient client(agent.connector(), std::chrono::milliseconds(500));
    ASSERT_TRUE(client.set_time(1'700'000'000'123'456'789).ok());
    ASSERT_TRUE(client.shutdown().ok());
  }
  EXPECT_EQ(agent.requests[1]["arguments"]["time"], 1'700'000'000'123'456'789);
  EXPECT_EQ(agent.requests[2]["arguments"]["mode"], "powerdown");
}

}  // namespace
}  // namespace hostvisor::agent::qga
