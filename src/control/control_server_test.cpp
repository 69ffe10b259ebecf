// The server on a real socket with scripted hooks, driven by the real client.
#include "control/control_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "control/control_client.h"
#include "vmm/console_output.h"

namespace hostvisor::control {
namespace {

using namespace std::chrono_literals;

std::string socket_path(const char* name) {
  return (std::filesystem::temp_directory_path() /
          ("hv-ctl-" + std::string(name) + "-" + std::to_string(::getpid()) + ".sock"))
      .string();
}

// Answers on a thread of its own, as the VM controller does from the event
// loop: echo gives back its arguments, later never answers, others are unknown.
struct ThreadedHooks {
  std::vector<std::thread> threads;
  std::shared_ptr<ConsoleOutput> output = *ConsoleOutput::create({.to_stdout = false});
  std::mutex mutex;
  std::string typed;
  ~ThreadedHooks() {
    for (auto& t : threads) t.join();
  }
  ServerHooks hooks() {
    ServerHooks hooks;
    hooks.handle = [this](const Request& request, Reply reply) {
      threads.emplace_back([request, reply = std::move(reply)]() mutable {
        if (request.op == "echo") {
          std::this_thread::sleep_for(std::chrono::milliseconds(request.args.value("delay_ms", 0)));
          reply(json{{"n", request.args.value("n", -1)}});
        } else if (request.op == "later") {
          // Dropped unanswered: the server answers busy.
        } else {
          reply(Error(ErrorCode::kInvalidArgument, "unknown op \"" + request.op + "\""));
        }
      });
    };
    hooks.current_state = [] { return json{{"event", "state"}, {"state", "running"}}; };
    hooks.attach_console = [this](std::function<void(std::span<const uint8_t>)> sink, bool replay) {
      return output->attach(std::move(sink), replay);
    };
    hooks.detach_console = [this](uint64_t id) { output->detach(id); };
    hooks.console_input = [this](std::span<const uint8_t> bytes) {
      std::lock_guard lock(mutex);
      typed.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    };
    return hooks;
  }
  std::string typed_now() {
    std::lock_guard lock(mutex);
    return typed;
  }
};

std::string read_some(int fd, size_t want, std::chrono::milliseconds timeout) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buffer[65536];
    const ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, want - got.size()));
    if (n <= 0) break;
    got.append(buffer, static_cast<size_t>(n));
  }
  return got;
}

UniqueFd raw_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return UniqueFd();
  return fd;
}

TEST(ControlServer, TheSocketIsPrivateAndGoesAwayAtStop) {
  ThreadedHooks hooks;
  const std::string path = socket_path("mode");
  auto server = ControlServer::start(path, hooks.hooks());
  ASSERT_TRUE(server) << server.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(path + "." + std::to_string(::getpid()) + ".tmp"));
  (*server)->stop();
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ControlServer, RepliesFromOtherThreadsComeInRequestOrder) {
  ThreadedHooks hooks;
  const std::string path = socket_path("order");
  auto server = ControlServer::start(path, hooks.hooks());
  ASSERT_TRUE(server);
  // Pipelined on one connection: the first is the slowest, yet answered first.
  UniqueFd fd = raw_connect(path);
  ASSERT_TRUE(fd.valid());
  const std::string requests = R"({"id":1,"op":"echo","n":1,"delay_ms":200}
{"id":2,"op":"echo","n":2}
{"id":"three","op":"echo","n":3}
)";
  ASSERT_EQ(::write(fd.get(), requests.data(), requests.size()), ssize_t(requests.size()));
  LineSplitter lines;
  std::vector<json> replies;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (replies.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    lines.feed(read_some(fd.get(), 1, 100ms));
    std::string line;
    while (lines.next(line) == LineSplitter::Status::kLine) replies.push_back(json::parse(line));
  }
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0]["id"], 1);
  EXPECT_EQ(replies[0]["result"]["n"], 1);
  EXPECT_EQ(replies[1]["id"], 2);
  EXPECT_EQ(replies[2]["id"], "three");
  EXPECT_EQ(replies[2]["result"]["n"], 3);
}

TEST(ControlServer, BadRequestsGetErrorsAndALongLineClosesTheConnection) {
  ThreadedHooks hooks;
  const std::string path = socket_path("errors");
  auto server = ControlServer::start(path, hooks.hooks());
  ASSERT_TRUE(server);
  auto client = ControlClient::connect(path);
  ASSERT_TRUE(client);
  auto unknown = client->call("frobnicate");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(unknown.error().message(), "unknown op \"frobnicate\"");
  auto never = client->call("later");
  ASSERT_FALSE(never);
  EXPECT_EQ(never.error().code(), ErrorCode::kBusy);

  UniqueFd fd = raw_connect(path);
  ASSERT_TRUE(fd.valid());
  const std::string garbage = "{nope\n[1,2]\n{\"id\":4}\n";
  ASSERT_EQ(::write(fd.get(), garbage.data(), garbage.size()), ssize_t(garbage.size()));
  LineSplitter lines;
  std::vector<json> replies;
  for (int i = 0; i < 50 && replies.size() < 3; ++i) {
    lines.feed(read_some(fd.get(), 4096, 100ms));
    std::string line;
    while (lines.next(line) == LineSplitter::Status::kLine) replies.push_back(json::parse(line));
  }
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0]["error"]["message"], "the request is not valid JSON");
  EXPECT_EQ(replies[1]["error"]["message"], "the request must be a JSON object");
  EXPECT_EQ(replies[2]["id"], 4);
  EXPECT_EQ(replies[2]["error"]["message"], "the request has no \"op\"");
  // The connection still serves after them.
  ASSERT_TRUE(client->call("echo"));

  // 64 KiB without a newline: one error, then the server closes.
  UniqueFd longer = raw_connect(path);
  const std::string huge(kMaxLineBytes + 100, 'x');
  ASSERT_EQ(::send(longer.get(), huge.data(), huge.size(), MSG_NOSIGNAL), ssize_t(huge.size()));
  const std::string answer = read_some(longer.get(), 1 << 20, 3s);
  ASSERT_FALSE(answer.empty());
  const json error = json::parse(answer.substr(0, answer.find('\n')));
  EXPECT_EQ(error["error"]["code"], "invalid-argument");
  EXPECT_NE(error["error"]["message"].get<std::string>().find("64 KiB"), std::string::npos);
  char byte;
  EXPECT_EQ(::read(longer.get(), &byte, 1), 0);  // closed
}

TEST(ControlServer, APeerWithAnotherUidIsClosedWithoutAWord) {
  ThreadedHooks hooks;
  const std::string path = socket_path("uid");
  auto server = ControlServer::start(path, hooks.hooks());
  ASSERT_TRUE(server);
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user (uid 65534) in a child";
  // The mode alone keeps others out; open it up so the peer check is what refuses.
  const pid_t denied_by_mode = ::fork();
  if (denied_by_mode == 0) {
    if (::setuid(65534) != 0) _exit(3);
    _exit(raw_connect(path).valid() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(denied_by_mode, &status, 0), denied_by_mode);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "uid 65534 could connect to a 0600 socket";

  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setuid(65534) != 0) _exit(3);
    UniqueFd fd = raw_connect(path);
    if (!fd.valid()) _exit(4);
    const std::string request = "{\"id\":1,\"op\":\"echo\"}\n";
    (void)::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
    char buffer[64];
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) _exit(5);
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    _exit(n <= 0 ? 0 : 1);  // closed, with no reply
  }
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the other uid got a reply; 4: could not connect; 5: left open";
  // The owner still gets in.
  EXPECT_TRUE(control_call(path, "echo"));
}

TEST(ControlServer, SubscribersGetTheStateThenEventsAndTheLastOneAtStop) {
  ThreadedHooks hooks;
  const std::string path = socket_path("events");
  auto server = ControlServer::start(path, hooks.hooks());
  ASSERT_TRUE(server);
  auto subscriber = ControlClient::connect(path);
  auto other = ControlClient::connect(path);
  ASSERT_TRUE(subscriber && other);
  ASSERT_TRUE(subscriber->subscribe());
  auto first = subscriber->next_event(5s);
  ASSERT_TRUE(first && *first);
  EXPECT_EQ((**first)["state"], "running");
  EXPECT_EQ((**first)["reason"], "subscribed");
  (*server)->publish({{"event", "state"}, {"state", "paused"}, {"reason", "pause"}});
  auto paused = subscriber->next_event(5s);
  ASSERT_TRUE(paused && *paused);
  EXPECT_EQ((**paused)["state"], "paused");
  // Not subscribed: its replies only.
  auto echo = other->call("echo", {{"n", 5}});
  ASSERT_TRUE(echo);
  EXPECT_EQ((*echo)["n"], 5);
  auto none = other->next_event(100ms);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  (*server)->stop({{"event", "state"}, {"state", "stopped"}, {"reason", "test"}});
  auto last = subscriber->next_event(5s);
  ASSERT_TRUE(last && *last);
  EXPECT_EQ((**last)["state"], "stopped");
}

TEST(ControlServer, ConsoleAttachmentsShareOutputAndInputAndASlowOneOnlyLosesItsOwn) {
  ThreadedHooks hooks;
  const std::string path = socket_path("console");
  auto server = ControlServer::start(path, hooks.hooks());
  ASSERT_TRUE(server);
  const std::string before = "booted\r\n/ # ";
  hooks.output->write(std::span(reinterpret_cast<const uint8_t*>(before.data()), before.size()));

  auto fast_client = ControlClient::connect(path);
  auto slow_client = ControlClient::connect(path);
  ASSERT_TRUE(fast_client && slow_client);
  auto fast = fast_client->attach_console(/*replay=*/true);
  auto slow = slow_client->attach_console(/*replay=*/false);
  ASSERT_TRUE(fast && slow);
  EXPECT_EQ(read_some(fast->get(), before.size(), 5s), before);  // the replay

  ASSERT_EQ(::write(fast->get(), "ls\r", 3), 3);
  ASSERT_EQ(::write(slow->get(), "pwd\r", 4), 4);
  for (int i = 0; i < 100 && hooks.typed_now().size() < 7; ++i) std::this_thread::sleep_for(20ms);
  const std::string typed = hooks.typed_now();
  EXPECT_EQ(typed.size(), 7u);
  EXPECT_NE(typed.find("ls\r"), std::string::npos);
  EXPECT_NE(typed.find("pwd\r"), std::string::npos);

  // 4 MiB of output while `slow` reads nothing: writing never waits for a
  // reader, the reader that keeps up gets every byte, the slow one only what
  // fit in its backlog. The writer lets the fast reader catch up after each
  // 64 KiB (well within its backlog), as a terminal reading steadily would.
  constexpr size_t kTotal = 4 << 20;
  std::atomic<size_t> fast_got{0};
  std::thread reader([&] {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    char buffer[65536];
    while (fast_got < kTotal && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fast->get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::read(fast->get(), buffer, sizeof buffer);
      if (n <= 0) break;
      fast_got += static_cast<size_t>(n);
    }
  });
  const std::vector<uint8_t> chunk(4096, 'a');
  std::chrono::steady_clock::duration writing{};
  for (size_t sent = 0; sent < kTotal;) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 16; ++i, sent += chunk.size()) hooks.output->write(chunk);
    writing += std::chrono::steady_clock::now() - start;
    for (int i = 0; i < 500 && fast_got < sent; ++i) std::this_thread::sleep_for(10ms);
  }
  reader.join();
  EXPECT_LT(writing, 5s);
  EXPECT_EQ(fast_got.load(), kTotal);
  const size_t slow_got = read_some(slow->get(), kTotal, 2s).size();
  EXPECT_GT(slow_got, 0u);
  EXPECT_LT(slow_got, kTotal);
}

}  // namespace
}  // namespace hostvisor::control
