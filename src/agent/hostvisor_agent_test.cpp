// The hostvisor agent and the host client together, with no guest: the real
// hostvisor-agent binary serves a unix socket (--listen unix:PATH) and
// HostvisorAgentClient drives every operation the host has.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "agent/hostvisor_agent_client.h"

namespace hostvisor::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class AgentProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hv-agent-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    socket_ = (dir_ / "agent.sock").string();
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::execl(HV_AGENT_PATH, HV_AGENT_PATH, "--listen", ("unix:" + socket_).c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !fs::exists(socket_); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(fs::exists(socket_)) << "hostvisor-agent did not listen on " << socket_;
    client_ = std::make_unique<HostvisorAgentClient>(unix_connector(socket_));
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  struct Output {
    std::string out, err;
  };
  Result<ExecResult> run(ExecRequest request, const std::string& input, Output& output) {
    // From a file, which poll finds always readable: no writer thread.
    const fs::path input_file = dir_ / "stdin";
    std::ofstream(input_file, std::ios::binary) << input;
    const int in = ::open(input_file.c_str(), O_RDONLY | O_CLOEXEC);
    ExecStreams streams;
    streams.stdin_fd = in;
    streams.on_stdout = [&](std::span<const uint8_t> b) { output.out.append(reinterpret_cast<const char*>(b.data()), b.size()); };
    streams.on_stderr = [&](std::span<const uint8_t> b) { output.err.append(reinterpret_cast<const char*>(b.data()), b.size()); };
    auto result = client_->exec(request, streams);
    ::close(in);
    return result;
  }

  fs::path dir_;
  std::string socket_;
  pid_t pid_ = -1;
  std::unique_ptr<HostvisorAgentClient> client_;
};

TEST_F(AgentProcess, PingAndInfoDescribeThisMachine) {
  ASSERT_TRUE(client_->ping().ok());
  auto info = client_->info();
  ASSERT_TRUE(info.ok()) << info.error().message();
  utsname uts{};
  ::uname(&uts);
  EXPECT_EQ(info->kernel_release, uts.release);
  EXPECT_EQ(info->hostname, uts.nodename);
  EXPECT_GT(info->memory_total_bytes, info->memory_available_bytes);
  EXPECT_GT(info->uptime_seconds, 0);
  EXPECT_LT(std::abs(info->unix_time_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch()).count()),
            5'000'000'000);
  bool root = false, loopback = false;
  for (const auto& f : info->filesystems) root |= f.mount_point == "/";
  for (const auto& i : info->interfaces)
    for (const auto& a : i.addresses) loopback |= a == "127.0.0.1/8";
  EXPECT_TRUE(root);
  EXPECT_TRUE(loopback);
}

TEST_F(AgentProcess, ExecStreamsStdinStdoutStderrAndTheExitStatus) {
  Output output;
  auto result = run({.argv = {"sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"}}, "hello agent\n", output);
  ASSERT_TRUE(result.ok()) << result.error().message();
  EXPECT_EQ(result->exit_code, 3);
  EXPECT_EQ(result->signal, 0);
  EXPECT_EQ(output.out, "HELLO AGENT\n");
  EXPECT_EQ(output.err, "oops\n");
}

TEST_F(AgentProcess, ExecCarriesMegabytesBothWaysWithoutDeadlock) {
  std::string input(3 << 20, '\0');
  std::mt19937 rng(1);
  for (auto& c : input) c = static_cast<char>(rng());
  Output output;
  auto result = run({.argv = {"cat"}}, input, output);
  ASSERT_TRUE(result.ok()) << result.error().message();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_TRUE(output.out == input) << output.out.size() << " bytes back of " << input.size();
}

TEST_F(AgentProcess, ExecPassesEnvironmentAndWorkingDirectory) {
  Output output;
  auto result = run({.argv = {"sh", "-c", "echo $GREETING; pwd"}, .env = {"GREETING=hi"}, .cwd = dir_.string()}, "", output);
  ASSERT_TRUE(result.ok()) << result.error().message();
  EXPECT_EQ(output.out, "hi\n" + dir_.string() + "\n");
}

TEST_F(AgentProcess, AMissingCommandIsNotFound) {
  Output output;
  auto result = run({.argv = {"/no/such/command"}}, "", output);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(result.error().message().find("/no/such/command"), std::string::npos);
}

TEST_F(AgentProcess, TerminalSeesTheSizeTheHostSetAndFollowsAResize) {
  int input[2];
  ASSERT_EQ(::pipe(input), 0);
  const int events = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::string out;
  bool resized = false;
  ExecStreams streams;
  streams.stdin_fd = input[0];
  streams.event_fd = events;
  streams.on_stdout = [&](std::span<const uint8_t> b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    if (!resized && out.find("31 97") != std::string::npos) {
      resized = true;
      uint64_t one = 1;
      ::write(events, &one, sizeof(one));
    }
  };
  streams.on_event = [&](ExecControl& control) {
    uint64_t n;
    ::read(events, &n, sizeof(n));
    EXPECT_TRUE(control.resize(50, 132).ok());
    ::write(input[1], "go\n", 3);
    ::close(input[1]);
  };
  auto result = client_->exec({.argv = {"sh", "-c", "stty size; read x; stty size; exit 4"}, .terminal = true, .rows = 31, .cols = 97},
                              streams);
  ::close(input[0]);
  ::close(events);
  ASSERT_TRUE(result.ok()) << result.error().message();
  EXPECT_EQ(result->exit_code, 4);
  EXPECT_NE(out.find("31 97"), std::string::npos) << out;
  EXPECT_NE(out.find("50 132"), std::string::npos) << out;
}

TEST_F(AgentProcess, CtrlCOnTheTerminalInterruptsTheCommand) {
  int input[2];
  ASSERT_EQ(::pipe(input), 0);
  std::string out;
  ExecStreams streams;
  streams.stdin_fd = input[0];
  streams.on_stdout = [&](std::span<const uint8_t> b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    if (out.find("ready") != std::string::npos && input[1] >= 0) {
      ::write(input[1], "\x03", 1);
      ::close(input[1]);
      input[1] = -1;
    }
  };
  const auto start = std::chrono::steady_clock::now();
  auto result = client_->exec({.argv = {"sh", "-c", "echo ready; exec sleep 30"}, .terminal = true}, streams);
  ::close(input[0]);
  ASSERT_TRUE(result.ok()) << result.error().message();
  EXPECT_EQ(result->signal, SIGINT);
  EXPECT_EQ(result->status(), 130);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(AgentProcess, ASignalFromTheHostReachesACommandWithoutTerminal) {
  const int events = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ExecStreams streams;
  streams.event_fd = events;
  std::string out;
  streams.on_stdout = [&](std::span<const uint8_t> b) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    uint64_t one = 1;
    ::write(events, &one, sizeof(one));
  };
  streams.on_event = [&](ExecControl& control) {
    uint64_t n;
    ::read(events, &n, sizeof(n));
    EXPECT_TRUE(control.signal(SIGTERM).ok());
    EXPECT_FALSE(control.resize(10, 10).ok());  // no terminal to resize
  };
  auto result = client_->exec({.argv = {"sh", "-c", "echo ready; exec sleep 30"}}, streams);
  ::close(events);
  ASSERT_TRUE(result.ok()) << result.error().message();
  EXPECT_EQ(result->signal, SIGTERM);
}

TEST_F(AgentProcess, FilesCopyBothWaysWithModeAndMtime) {
  const fs::path source = dir_ / "source";
  std::string content(5 << 20, '\0');
  std::mt19937 rng(2);
  for (auto& c : content) c = static_cast<char>(rng());
  std::ofstream(source, std::ios::binary) << content;
  const fs::path guest = dir_ / "guest-side";
  FileAttributes attributes{.mode = 0640, .mtime_ns = 1'600'000'000'123'456'789};
  {
    const int fd = ::open(source.c_str(), O_RDONLY);
    auto written = client_->write_file(guest.string(), fd, attributes);
    ::close(fd);
    ASSERT_TRUE(written.ok()) << written.error().message();
  }
  struct stat st {};
  ASSERT_EQ(::stat(guest.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec, attributes.mtime_ns);

  const fs::path back = dir_ / "back";
  const int fd = ::open(back.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  auto read = client_->read_file(guest.string(), fd);
  ::close(fd);
  ASSERT_TRUE(read.ok()) << read.error().message();
  EXPECT_EQ(read->mode, 0640u);
  EXPECT_EQ(read->mtime_ns, attributes.mtime_ns);
  EXPECT_EQ(read->size, content.size());
  std::ifstream in(back, std::ios::binary);
  const std::string copied((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(copied == content);
}

TEST_F(AgentProcess, FileErrorsSayWhat) {
  const int fd = ::open("/dev/null", O_WRONLY);
  auto missing = client_->read_file((dir_ / "missing").string(), fd);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  auto relative = client_->read_file("relative/path", fd);
  ASSERT_FALSE(relative.ok());
  EXPECT_NE(relative.error().message().find("not absolute"), std::string::npos);
  ::close(fd);
  const fs::path source = dir_ / "s";
  std::ofstream(source) << "x";
  const int in = ::open(source.c_str(), O_RDONLY);
  auto no_dir = client_->write_file((dir_ / "no-such-dir" / "f").string(), in, {});
  ::close(in);
  EXPECT_FALSE(no_dir.ok());
}

// A hostile host: the agent must hold it to what it announced and drop a
// connection that breaks the framing, and go on serving others.
TEST_F(AgentProcess, TheAgentRefusesMoreFileDataThanAnnouncedAndOversizedFrames) {
  {
    auto fd = connect_unix(socket_);
    ASSERT_TRUE(fd.ok());
    protocol::FrameChannel channel(std::move(*fd));
    ASSERT_TRUE(channel.receive_json(5s).ok());  // hello
    channel.send_json({{"op", "write_file"}, {"path", (dir_ / "f").string()}, {"size", 2}, {"mode", 0644}, {"mtime_ns", 0}});
    const std::string five = "12345";
    channel.send_data(protocol::Stream::kStdin, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(five.data()), five.size()));
    channel.send_end(protocol::Stream::kStdin);
    ASSERT_TRUE(channel.flush(5s).ok());
    auto first = channel.receive_json(5s);
    ASSERT_TRUE(first.ok()) << first.error().message();
    EXPECT_TRUE(protocol::check_reply(*first).ok());
    auto second = channel.receive_json(5s);
    ASSERT_TRUE(second.ok()) << second.error().message();
    auto outcome = protocol::check_reply(*second);
    ASSERT_FALSE(outcome.ok());
    EXPECT_NE(outcome.error().message().find("more than"), std::string::npos) << outcome.error().message();
    EXPECT_FALSE(fs::exists(dir_ / "f"));
    for (const auto& entry : fs::directory_iterator(dir_))  // and no temporary file left behind
      EXPECT_EQ(entry.path().filename().string().find(".hostvisor-agent-"), std::string::npos) << entry.path();
  }
  {
    auto fd = connect_unix(socket_);
    ASSERT_TRUE(fd.ok());
    const std::string giant("\x7f\xff\xff\xff\x01", 5);
    ASSERT_EQ(::write(fd->get(), giant.data(), giant.size()), 5);
    protocol::FrameChannel channel(std::move(*fd));
    ASSERT_TRUE(channel.receive_json(5s).ok());           // hello
    EXPECT_FALSE(channel.receive_json(5s).ok());          // then the agent hangs up
  }
  EXPECT_TRUE(client_->ping().ok());
}

TEST_F(AgentProcess, MachineWideOperationsAreOffOnAUnixSocket) {
  // An agent on the host must never set the host's clock or power it off.
  for (auto outcome : {client_->set_time(0), client_->shutdown(), client_->reboot(), client_->reseed_rng(std::vector<uint8_t>(16, 1))}) {
    ASSERT_FALSE(outcome.ok());
    EXPECT_EQ(outcome.error().code(), ErrorCode::kUnsupported) << outcome.error().message();
  }
}

}  // namespace
}  // namespace hostvisor::agent
