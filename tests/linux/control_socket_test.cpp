// `hostvisor run --headless --control` on the default guest, driven only
// through its control socket by the client library the daemon uses: one
// clone of the shared snapshot of the booted guest goes through every
// operation, is suspended (snapshot with quit), and the snapshot continues
// in a second run.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "control/control_client.h"
#include "tests/linux/default_guest_snapshot.h"
#include "tests/linux/control_socket_wait.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using control::ControlClient;
using control::json;
using namespace std::chrono_literals;

constexpr auto kCommandTimeout = 60s;

// Reads a console attachment until `pattern` matches what came since
// `seen` was last cut; returns the match's first group (or the whole match).
std::optional<std::string> console_wait(int fd, std::string& seen, const std::regex& pattern,
                                        std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::smatch match;
    if (std::regex_search(seen, match, pattern)) {
      std::string result = match.size() > 1 ? match[1].str() : match[0].str();
      seen = match.suffix();
      return result;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200))) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) return std::nullopt;
    seen.append(buffer, static_cast<size_t>(n));
  }
}

// Runs a shell command through a console attachment; what came between the
// typed line and the status marker, and the command's status.
std::optional<std::pair<std::string, int>> console_run(int fd, std::string& seen, const std::string& command) {
  static int serial = 0;
  const std::string tag = std::to_string(++serial);
  // The typed line's echo has the marker in quoted pieces, so only the
  // command's own output matches.
  const std::string line = command + "; echo \"@@" + tag + ":\"$?\"@@\"\r";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return std::nullopt;
  const std::regex marker("@@" + tag + ":(\\d+)@@");
  const auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
  std::string output;
  for (;;) {
    std::smatch match;
    if (std::regex_search(seen, match, marker)) {
      output = match.prefix();
      const int status = std::stoi(match[1].str());
      seen = match.suffix();
      return std::pair{output, status};
    }
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) return std::nullopt;
    seen.append(buffer, static_cast<size_t>(n));
  }
}

uint64_t exits(const json& metrics) { return metrics["vcpus"][0]["exits"].get<uint64_t>(); }

uint16_t free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t length = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Connects to 127.0.0.1:port and reads until the peer closes; nullopt if
// the connection is refused.
std::optional<std::string> fetch(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return std::nullopt;
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buffer[1024];
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n <= 0) break;
    got.append(buffer, static_cast<size_t>(n));
  }
  return got;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(LinuxControlSocket, EveryOperationOnAHeadlessGuestThenSuspendAndContinue) {
  ScratchDir scratch{"control-socket"};
  const fs::path socket = scratch.path / "vm.sock", log = scratch.path / "console.log",
                 suspended = scratch.path / "suspended";
  DefaultGuestSnapshot booted;
  ASSERT_TRUE(booted.ok()) << booted.error();
  GuestConsole vm;
  // The sandbox (on by default) lets the VM listen only on the ports named
  // at start: hostfwd-add below uses `port`.
  const uint16_t port = free_tcp_port();
  ASSERT_TRUE(booted.start_clone(vm, {"--headless", "--control", socket.string(), "--console-log", log.string(),
                                      "--sandbox-bind", std::to_string(port)}))
      << vm.failure();
  auto client = wait_for_control_socket(socket, vm);
  ASSERT_TRUE(client) << "no control socket at " << socket << "\nstderr:\n" << vm.err();

  // info
  auto info = client->call("info");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ((*info)["state"], "running");
  EXPECT_EQ((*info)["pid"], vm.pid());
  EXPECT_EQ((*info)["accel"], "emu");
  EXPECT_EQ((*info)["cpus"], 1);
  EXPECT_EQ((*info)["memory_bytes"], 512ull << 20);
  EXPECT_EQ((*info)["headless"], true);
  ASSERT_EQ((*info)["nics"].size(), 1u);
  EXPECT_EQ((*info)["nics"][0]["kind"], "user");

  auto events = ControlClient::connect(socket.string());
  ASSERT_TRUE(events);
  ASSERT_TRUE(events->subscribe());
  auto first_event = events->next_event(5s);
  ASSERT_TRUE(first_event && *first_event);
  EXPECT_EQ((**first_event)["state"], "running");

  // The console: a command typed through one attachment answers on it.
  auto typing_client = ControlClient::connect(socket.string());
  ASSERT_TRUE(typing_client);
  auto typing = typing_client->attach_console(false);
  ASSERT_TRUE(typing) << typing.error().message();
  std::string seen;
  auto answer = console_run(typing->get(), seen, "export HV_VAR=kept-42; echo hv-$((6*7))");
  ASSERT_TRUE(answer) << "no answer on the console; so far:\n" << seen;
  EXPECT_NE(answer->first.find("hv-42"), std::string::npos) << answer->first;
  // A second attachment with replay gets the output that came before it.
  auto replay_client = ControlClient::connect(socket.string());
  ASSERT_TRUE(replay_client);
  auto replay = replay_client->attach_console(true);
  ASSERT_TRUE(replay);
  std::string replayed;
  EXPECT_TRUE(console_wait(replay->get(), replayed, std::regex("hv-42"), 10s)) << replayed;
  EXPECT_EQ(vm.out(), "") << "headless: nothing goes to stdout";
  EXPECT_NE(read_text(log).find("hv-42"), std::string::npos);

  // pause / resume: the vCPU stops (no exits, typed input is not answered).
  auto before = client->call("metrics");
  ASSERT_TRUE(before) << before.error().message();
  EXPECT_GT(exits(*before), 0u);
  auto paused = client->call("pause");
  ASSERT_TRUE(paused) << paused.error().message();
  EXPECT_EQ((*paused)["state"], "paused");
  auto paused_event = events->next_event(5s);
  ASSERT_TRUE(paused_event && *paused_event);
  EXPECT_EQ((**paused_event)["state"], "paused");
  const uint64_t exits_paused = exits(*client->call("metrics"));
  const std::string while_paused = "echo p-$((2+3))\r";
  ASSERT_EQ(::write(typing->get(), while_paused.data(), while_paused.size()), ssize_t(while_paused.size()));
  EXPECT_FALSE(console_wait(typing->get(), seen, std::regex("p-5\\r?\\n"), 1500ms)) << "the paused guest answered";
  EXPECT_EQ(exits(*client->call("metrics")), exits_paused);
  EXPECT_EQ((*client->call("info"))["state"], "paused");
  EXPECT_TRUE(client->call("pause"));  // idempotent
  auto resumed = client->call("resume");
  ASSERT_TRUE(resumed);
  EXPECT_EQ((*resumed)["state"], "running");
  auto resumed_event = events->next_event(5s);
  ASSERT_TRUE(resumed_event && *resumed_event);
  EXPECT_EQ((**resumed_event)["state"], "running");
  EXPECT_TRUE(console_wait(typing->get(), seen, std::regex("p-5\\r?\\n"), kCommandTimeout)) << seen;
  EXPECT_GT(exits(*client->call("metrics")), exits_paused);

  // hostfwd-add: a host connection reaches a guest listener; remove: it no longer does.
  ASSERT_TRUE(console_run(typing->get(), seen, "(echo from-guest-nc | nc -l -p 8080) >/dev/null 2>&1 & true"));
  // Listening before the forward is used: a connection the guest refused
  // while nc was still starting hung every later attempt in CI (400 s).
  ASSERT_TRUE(console_run(typing->get(), seen,
                          "i=0; until netstat -ltn | grep -q ':8080 '; do i=$((i+1)); [ $i -gt 100 ] && break; "
                          "sleep 0.1; done; netstat -ltn | grep -c ':8080 '"));
  const json forward = {{"nic", 0},          {"proto", "tcp"},   {"host_addr", "127.0.0.1"},
                        {"host_port", port}, {"guest_addr", ""}, {"guest_port", 8080}};
  auto added = client->call("hostfwd-add", forward);
  ASSERT_TRUE(added) << added.error().message();
  std::optional<std::string> fetched;
  for (int attempt = 0; attempt < 20; ++attempt) {
    fetched = fetch(port);
    if (fetched && fetched->find("from-guest-nc") != std::string::npos) break;
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_TRUE(fetched) << "the forward refused the connection";
  EXPECT_NE(fetched->find("from-guest-nc"), std::string::npos) << *fetched;
  auto again = client->call("hostfwd-add", forward);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kIo) << again.error().message();  // the port is taken
  ASSERT_TRUE(client->call("hostfwd-remove", forward));
  EXPECT_FALSE(fetch(port)) << "the removed forward still answers";
  auto removed_again = client->call("hostfwd-remove", forward);
  ASSERT_FALSE(removed_again);
  EXPECT_NE(removed_again.error().message().find("no tcp forward"), std::string::npos);
  // A port the VM was not given at start is refused by the sandbox, saying so.
  uint16_t other_port = free_tcp_port();
  while (other_port == port) other_port = free_tcp_port();
  auto not_given = client->call("hostfwd-add", {{"nic", 0}, {"host_port", other_port}, {"guest_port", 8080}});
  ASSERT_FALSE(not_given);
  EXPECT_NE(not_given.error().message().find("--sandbox-bind"), std::string::npos) << not_given.error().message();
  auto no_nic = client->call("hostfwd-add", {{"nic", 3}, {"host_port", port}, {"guest_port", 80}});
  ASSERT_FALSE(no_nic);
  EXPECT_EQ(no_nic.error().code(), ErrorCode::kInvalidArgument);
  auto after = client->call("metrics");
  ASSERT_TRUE(after);
  EXPECT_GT((*after)["nics"][0]["tx_packets"].get<uint64_t>(), (*before)["nics"][0]["tx_packets"].get<uint64_t>());
  EXPECT_GT((*after)["nics"][0]["rx_bytes"].get<uint64_t>(), (*before)["nics"][0]["rx_bytes"].get<uint64_t>());
  EXPECT_GT((*after)["memory"]["host_rss_bytes"].get<uint64_t>(), 0u);
  // The process's CPU time only grows, and the guest has been running.
  const auto cpu_ns = [](const json& m) {
    return m["cpu"]["user_ns"].get<uint64_t>() + m["cpu"]["system_ns"].get<uint64_t>();
  };
  EXPECT_GT(cpu_ns(*before), 0u);
  EXPECT_GE(cpu_ns(*after), cpu_ns(*before));

  // The balloon: the guest's driver takes the target.
  ASSERT_TRUE(client->call("balloon-set", {{"bytes", 64 << 20}}));
  uint64_t actual = 0;
  for (int i = 0; i < 120 && actual != (64u << 20); ++i) {
    auto balloon = client->call("balloon");
    ASSERT_TRUE(balloon) << balloon.error().message();
    actual = (*balloon)["actual_bytes"].get<uint64_t>();
    if (actual != (64u << 20)) std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(actual, 64u << 20);
  EXPECT_EQ((*client->call("metrics"))["balloon"]["target_bytes"], 64u << 20);
  auto too_big = client->call("balloon-set", {{"bytes", 1ull << 30}});
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().code(), ErrorCode::kInvalidArgument);
  ASSERT_TRUE(client->call("balloon-set", {{"bytes", 0}}));

  // Requests that are wrong.
  auto unknown = client->call("frobnicate");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidArgument);
  auto no_dir = client->call("snapshot");
  ASSERT_FALSE(no_dir);
  EXPECT_EQ(no_dir.error().message(), "missing argument \"dir\"");

  // Suspend: a snapshot, then the process ends with status 0 and the socket goes.
  auto snapshot = client->call("snapshot", {{"dir", suspended.string()}, {"quit", true}});
  ASSERT_TRUE(snapshot) << snapshot.error().message();
  EXPECT_EQ((*snapshot)["dir"], suspended.string());
  EXPECT_GT((*snapshot)["bytes"].get<uint64_t>(), 1u << 20);
  const auto status = vm.wait_exit(60s);
  ASSERT_TRUE(status) << vm.failure();
  EXPECT_EQ(*status, 0) << vm.err();
  std::vector<std::string> states;
  while (auto event = events->next_event(2s)) {
    if (!*event) break;
    states.push_back((**event)["state"]);
  }
  EXPECT_EQ(states, (std::vector<std::string>{"stopping", "stopped"}));
  EXPECT_FALSE(fs::exists(socket));
  EXPECT_TRUE(fs::exists(suspended / "header"));

  // The suspended guest continues in a new run.
  const fs::path socket2 = scratch.path / "vm2.sock";
  GuestConsole second;
  ASSERT_TRUE(second.start(
      {HOSTVISOR_PATH, "run", "--restore", suspended.string(), "--headless", "--control", socket2.string()}))
      << second.failure();
  auto client2 = wait_for_control_socket(socket2, second);
  ASSERT_TRUE(client2) << second.err();
  EXPECT_EQ((*client2->call("info"))["restored_from"], suspended.string());
  auto console2 = ControlClient::connect(socket2.string());
  ASSERT_TRUE(console2);
  auto typing2 = console2->attach_console(false);
  ASSERT_TRUE(typing2);
  std::string seen2;
  auto kept = console_run(typing2->get(), seen2, "echo var=$HV_VAR");
  ASSERT_TRUE(kept) << seen2 << "\nstderr:\n" << second.err();
  EXPECT_NE(kept->first.find("var=kept-42"), std::string::npos) << kept->first;
  // reset: the run reboots the guest into a new machine behind the same socket.
  auto events2 = ControlClient::connect(socket2.string());
  ASSERT_TRUE(events2);
  ASSERT_TRUE(events2->subscribe());
  ASSERT_TRUE(client2->call("reset"));
  std::vector<std::string> reboot;
  while (auto event = events2->next_event(60s)) {
    if (!*event) break;
    reboot.push_back((**event)["state"].get<std::string>() + ":" + (**event)["reason"].get<std::string>());
    if ((**event)["reason"] == "reboot") break;
  }
  EXPECT_EQ(reboot, (std::vector<std::string>{"running:subscribed", "stopping:the guest reset the machine; rebooting",
                                              "running:reboot"}));
  auto rebooted = client2->call("info");
  ASSERT_TRUE(rebooted) << rebooted.error().message();
  EXPECT_EQ((*rebooted)["state"], "running");
  ASSERT_TRUE(client2->call("quit"));
  const auto status2 = second.wait_exit(60s);
  ASSERT_TRUE(status2) << second.failure();
  EXPECT_EQ(*status2, 0) << second.err();
  EXPECT_FALSE(fs::exists(socket2));

  // powerdown: the ACPI power button; the default guest's acpid powers it
  // off cleanly, and the run ends with status 0.
  const fs::path socket3 = scratch.path / "vm3.sock";
  GuestConsole third;
  ASSERT_TRUE(third.start(
      {HOSTVISOR_PATH, "run", "--restore", suspended.string(), "--headless", "--control", socket3.string()}))
      << third.failure();
  auto client3 = wait_for_control_socket(socket3, third);
  ASSERT_TRUE(client3) << third.err();
  auto events3 = ControlClient::connect(socket3.string());
  ASSERT_TRUE(events3);
  ASSERT_TRUE(events3->subscribe());
  ASSERT_TRUE(client3->call("powerdown"));
  const auto status3 = third.wait_exit(60s);
  ASSERT_TRUE(status3) << third.failure() << "\nstderr:\n" << third.err();
  EXPECT_EQ(*status3, 0) << third.err();
  std::string ended;
  while (auto event = events3->next_event(5s)) {
    if (!*event) break;
    if ((**event)["state"] == "stopped") ended = (**event)["reason"].get<std::string>();
  }
  EXPECT_EQ(ended, "the guest powered off");
}

}  // namespace
}  // namespace hostvisor::testing
