// The guest agent in the default guest (one boot, software CPU, all checks
// on it): hostvisor run gives the default guest a vsock device at a
// predictable path and its init starts hostvisor-agent; through it, exec
// (`uname -r`; stdin in and status 3 out through `hostvisor agent exec`),
// exec on a terminal (`stty size` sees the host's size; Ctrl-C interrupts a
// sleep), `hostvisor agent exec -t` itself on a pty (raw mode while it runs,
// the size followed after a resize, the terminal restored), a 32 MiB copy in and out with `hostvisor agent cp` (sha256,
// mode, mtime), the clock after a pause; then a snapshot and a clone restored from it (RNG reseeded, clock set) that
// powers off through the agent.
//
// The clock check shifts the guest's clock an hour back rather than pausing
// for 30 s: after Ctrl-A p, p hostvisor must set it to the host's, so the
// guest reads within 1 s of the host's clock within 2 s of the resume.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>

#include "agent/hostvisor_agent_client.h"
#include "base/fd.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};
constexpr seconds kShutdownTimeout{90};
const std::regex kBanner(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\. Type 'poweroff' to stop\.)");

// Runs a host shell command line; returns its exit status, output in *out.
int host_command(const std::string& command, std::string* out) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out->append(buf, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct Captured {
  std::string out, err;
};

// `hostvisor agent ... exec -t` on a pty of the test's own, as a person's
// terminal runs it: the command is the session leader of the pty's session
// (so a resize sends it SIGWINCH), the test holds the master side.
class PtyCommand {
 public:
  PtyCommand(const std::vector<std::string>& argv, winsize size) {
    if (::openpty(&master_, &slave_, nullptr, nullptr, &size) != 0) return;
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {  // only async-signal-safe calls until exec
      ::setsid();
      ::ioctl(slave_, TIOCSCTTY, 0);
      ::dup2(slave_, STDIN_FILENO);
      ::dup2(slave_, STDOUT_FILENO);
      ::dup2(slave_, STDERR_FILENO);
      ::close(master_);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~PtyCommand() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
    if (slave_ >= 0) ::close(slave_);
  }
  bool started() const { return pid_ > 0; }
  // The terminal's settings as the command left them (the test keeps the slave open).
  termios settings() const {
    termios t{};
    ::tcgetattr(slave_, &t);
    return t;
  }
  bool type(const std::string& keys) {
    return ::write(master_, keys.data(), keys.size()) == static_cast<ssize_t>(keys.size());
  }
  bool resize(winsize size) { return ::ioctl(master_, TIOCSWINSZ, &size) == 0; }
  // Reads the terminal until `text` appears after the read cursor (which
  // then moves past it), or the timeout.
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (const size_t at = output_.find(text, cursor_); at != std::string::npos) {
        cursor_ = at + text.size();
        return true;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !read_some(left)) return false;
    }
  }
  // The exit status, or nullopt if it does not end in time (then it is killed).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return status_;
      }
      read_some(std::chrono::milliseconds(100));  // keeps the terminal drained
    }
    return std::nullopt;
  }
  const std::string& output() const { return output_; }

 private:
  // Reads what the terminal has within `budget`; false once it is gone
  // (EIO: no process holds the slave side but the test).
  bool read_some(std::chrono::milliseconds budget) {
    pollfd p{master_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(budget.count())) <= 0) return true;
    char buf[4096];
    const ssize_t n = ::read(master_, buf, sizeof buf);
    if (n <= 0) return false;
    output_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int master_ = -1, slave_ = -1;
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string output_;
  size_t cursor_ = 0;
};

Result<agent::ExecResult> exec(agent::AgentClient& client, agent::ExecRequest request, Captured& captured) {
  agent::ExecStreams streams;
  streams.on_stdout = [&](std::span<const uint8_t> b) {
    captured.out.append(reinterpret_cast<const char*>(b.data()), b.size());
  };
  streams.on_stderr = [&](std::span<const uint8_t> b) {
    captured.err.append(reinterpret_cast<const char*>(b.data()), b.size());
  };
  return client.exec(request, streams);
}

int64_t host_now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The guest's clock minus the host's, from the clock reading in the agent's
// info (busybox's date has whole seconds only), against the host's clock at
// the middle of the round trip.
std::optional<double> guest_clock_offset_s(agent::AgentClient& client) {
  const int64_t before = host_now_ns();
  auto info = client.info();
  const int64_t after = host_now_ns();
  if (!info.ok() || info->unix_time_ns == 0) return std::nullopt;
  return static_cast<double>(info->unix_time_ns - (before + after) / 2) / 1e9;
}

TEST(AgentGuest, ExecTerminalCopyClockAndPowerOffThroughTheAgent) {
  ScratchDir scratch{"agent-guest"};
  ASSERT_FALSE(scratch.path.empty());
  // The runtime directory decides where the default guest's vsock socket goes.
  ::setenv("XDG_RUNTIME_DIR", scratch.path.c_str(), 1);
  const std::string socket = (scratch.path / "hostvisor" / "vm" / "default-guest.vsock").string();

  GuestConsole console;
  const std::string snapshot = (scratch.path / "snapshot").string();
  // A disk the guest writes and the host reads back.
  const std::string disk = (scratch.path / "disk.raw").string();
  {
    UniqueFd fd(::open(disk.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::ftruncate(fd.get(), 16 << 20), 0);
  }
  // Every filter on and a violation fatal, said explicitly (kill is also
  // the default): the whole test runs with each thread under its filter.
  ASSERT_TRUE(console.start({HOSTVISOR_PATH, "--log-level", "info", "run", "--seccomp=kill", "--accel", "emu",
                             "--memory", "256M", "--disk", disk, "--snapshot-dir", snapshot}))
      << console.failure();
  auto banner = console.wait_for_regex(kBanner, kBootTimeout);
  ASSERT_TRUE(banner) << console.failure();
  const std::string release = (*banner)[1].str();
  EXPECT_NE(console.err().find("hostvisor agent --vsock " + socket), std::string::npos) << console.err();

  agent::HostvisorAgentClient client(agent::vsock_connector(socket), 30s);
  // The agent starts in the background of /init: wait for it.
  Result<void> ping = Error(ErrorCode::kInternal, "not tried");
  for (int i = 0; i < 120 && !(ping = client.ping()).ok(); ++i) std::this_thread::sleep_for(500ms);
  ASSERT_TRUE(ping.ok()) << ping.error().message() << "\n" << console.err();

  {  // exec uname -r
    Captured c;
    auto r = exec(client, {.argv = {"uname", "-r"}}, c);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_EQ(c.out, release + "\n");
  }
  for (const char* kind : {"setup", "vcpu", "event-loop"})
    EXPECT_NE(console.err().find(std::string("installs the ") + kind + " filter ("), std::string::npos)
        << kind << "\n"
        << console.err();
  {  // the disk: written and read back past the guest's cache, and seen by the host
    Captured c;
    auto r = exec(client,
                  {.argv = {"sh", "-c",
                            "echo seccomp-disk > /tmp/sector && dd if=/tmp/sector of=/dev/vda bs=512 count=1 "
                            "conv=sync,fsync 2>/dev/null && echo 3 > /proc/sys/vm/drop_caches && "
                            "dd if=/dev/vda bs=13 count=1 iflag=direct 2>/dev/null"}},
                  c);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->exit_code, 0) << c.err;
    EXPECT_EQ(c.out, "seccomp-disk\n") << c.err;
    char host[13] = {};
    UniqueFd fd(::open(disk.c_str(), O_RDONLY));
    ASSERT_EQ(::pread(fd.get(), host, sizeof(host), 0), 13);
    EXPECT_EQ(std::string(host, sizeof(host)), "seccomp-disk\n");
  }
  {  // the NAT: the host's gateway answers a ping (slirp's ICMP sockets)
    Captured c;
    // The default guest's DHCP runs in the background of /init: until its
    // lease, the network is unreachable.
    auto r = exec(
        client,
        {.argv = {"sh", "-c", "for i in $(seq 60); do ping -c 1 -W 2 10.0.2.2 && exit 0; sleep 1; done; exit 1"}}, c);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->exit_code, 0) << c.out << c.err;
  }
  {  // stdin in, output and status 3 out, through the command line
    std::string out;
    const int status = host_command("printf 'hello agent\\n' | " HOSTVISOR_PATH " agent --vsock " + socket +
                                        " exec -- sh -c 'tr a-z A-Z; echo to-stderr >&2; exit 3' 2>/dev/null",
                                    &out);
    EXPECT_EQ(status, 3);
    EXPECT_EQ(out, "HELLO AGENT\n");
  }
  {  // a terminal of the host's size
    Captured c;
    auto r = exec(client, {.argv = {"stty", "size"}, .terminal = true, .rows = 33, .cols = 101}, c);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_NE(c.out.find("33 101"), std::string::npos) << c.out;
  }
  {  // Ctrl-C on the terminal interrupts a sleep
    int input[2];
    ASSERT_EQ(::pipe(input), 0);
    std::string out;
    agent::ExecStreams streams;
    streams.stdin_fd = input[0];
    streams.on_stdout = [&](std::span<const uint8_t> b) {
      out.append(reinterpret_cast<const char*>(b.data()), b.size());
      if (out.find("ready") != std::string::npos && input[1] >= 0) {
        EXPECT_EQ(::write(input[1], "\x03", 1), 1);
        ::close(input[1]);
        input[1] = -1;
      }
    };
    const auto start = std::chrono::steady_clock::now();
    auto r = client.exec({.argv = {"sh", "-c", "echo ready; exec sleep 60"}, .terminal = true}, streams);
    ::close(input[0]);
    if (input[1] >= 0) ::close(input[1]);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->status(), 130) << out;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  }
  {  // `hostvisor agent exec -t` on a pty: raw mode, the size, SIGWINCH
    PtyCommand command({HOSTVISOR_PATH, "agent", "--vsock", socket, "exec", "-t", "--", "sh", "-c",
                        "echo started; stty size; while read line; do stty size; done; echo finished"},
                       winsize{.ws_row = 24, .ws_col = 80, .ws_xpixel = 0, .ws_ypixel = 0});
    ASSERT_TRUE(command.started());
    ASSERT_TRUE(command.wait_for("started", 60s)) << command.output();
    ASSERT_TRUE(command.wait_for("24 80", 30s)) << command.output();
    // Raw while it runs: every key goes to the guest's pty, none is echoed
    // or turned into a signal by the host's.
    const termios raw = command.settings();
    EXPECT_EQ(raw.c_lflag & (ICANON | ECHO | ISIG), 0u);
    // A resize reaches the guest's pty (SIGWINCH, then the agent's resize);
    // each line typed makes the guest print its size again.
    ASSERT_TRUE(command.resize(winsize{.ws_row = 40, .ws_col = 120, .ws_xpixel = 0, .ws_ypixel = 0}));
    bool resized = false;
    for (int i = 0; i < 20 && !resized; ++i) {
      ASSERT_TRUE(command.type("\r"));
      resized = command.wait_for("40 120", 1s);
    }
    EXPECT_TRUE(resized) << "the guest never saw the new size\n" << command.output();
    ASSERT_TRUE(command.type("\x04"));  // Ctrl-D: the guest's read sees EOF
    ASSERT_TRUE(command.wait_for("finished", 30s)) << command.output();
    const auto status = command.wait_exit(30s);
    ASSERT_TRUE(status) << command.output();
    EXPECT_EQ(*status, 0) << command.output();
    // And the terminal is as it was before.
    EXPECT_NE(command.settings().c_lflag & ICANON, 0u);
    EXPECT_NE(command.settings().c_lflag & ECHO, 0u);
  }
  {  // 32 MiB in and out with hostvisor agent cp
    const fs::path in = scratch.path / "in.bin", back = scratch.path / "back.bin";
    {
      std::string data(32 << 20, '\0');
      std::mt19937_64 rng(14);
      for (size_t i = 0; i < data.size(); i += 8) {
        const uint64_t v = rng();
        std::memcpy(&data[i], &v, 8);
      }
      std::ofstream(in, std::ios::binary) << data;
    }
    ASSERT_EQ(::chmod(in.c_str(), 0604), 0);
    const timespec times[2] = {{0, UTIME_OMIT}, {1'700'000'000, 123'456'789}};
    ASSERT_EQ(::utimensat(AT_FDCWD, in.c_str(), times, 0), 0);
    std::string out;
    const std::string cli = HOSTVISOR_PATH " agent --vsock " + socket;
    ASSERT_EQ(host_command(cli + " cp " + in.string() + " vm:/tmp/in.bin 2>&1", &out), 0) << out;
    std::string host_sum;
    ASSERT_EQ(host_command("sha256sum < " + in.string(), &host_sum), 0);
    Captured c;
    auto r = exec(client, {.argv = {"sh", "-c", "sha256sum < /tmp/in.bin; stat -c '%a %Y' /tmp/in.bin"}}, c);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(c.out, host_sum + "604 1700000000\n");
    out.clear();
    ASSERT_EQ(host_command(cli + " cp vm:/tmp/in.bin " + back.string() + " 2>&1", &out), 0) << out;
    std::string back_sum;
    ASSERT_EQ(host_command("sha256sum < " + back.string(), &back_sum), 0);
    EXPECT_EQ(back_sum, host_sum);
    struct stat st {};
    ASSERT_EQ(::stat(back.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0604u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1'700'000'000);
    EXPECT_EQ(st.st_mtim.tv_nsec, 123'456'789);
  }
  {  // the clock: an hour off, then a pause and resume; hostvisor corrects it
    Captured c;
    auto r = exec(client, {.argv = {"sh", "-c", "date -s @$(( $(date +%s) - 3600 ))"}}, c);
    ASSERT_TRUE(r.ok() && r->exit_code == 0) << c.out << c.err;
    const auto shifted = guest_clock_offset_s(client);
    ASSERT_TRUE(shifted);
    EXPECT_LT(*shifted, -3500) << "date -s did not move the guest's clock";
    ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
    ASSERT_TRUE(console.wait_for_text("VM paused", 30s)) << console.failure();
    std::this_thread::sleep_for(1s);
    ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
    ASSERT_TRUE(console.wait_for_text("VM resumed", 30s)) << console.failure();
    const auto resumed = std::chrono::steady_clock::now();
    std::optional<double> offset;
    while (std::chrono::steady_clock::now() - resumed < 2s) {
      offset = guest_clock_offset_s(client);
      if (offset && std::abs(*offset) < 1.0) break;
    }
    ASSERT_TRUE(offset);
    EXPECT_LT(std::abs(*offset), 1.0) << "the guest's clock is " << *offset << " s off 2 s after the resume";
    console.read_for(200ms);
    EXPECT_NE(console.err().find("set the guest's clock to the host's after a pause"), std::string::npos)
        << console.err();
  }
  // Snapshot and quit, then restore a clone: hostvisor reseeds its RNG and
  // sets its clock (the snapshot's time is behind by the time on disk).
  {
    Captured c;
    ASSERT_TRUE(exec(client, {.argv = {"rm", "/tmp/in.bin"}}, c).ok());
  }
  ASSERT_TRUE(console.send_keys("\x01S")) << console.failure();
  ASSERT_TRUE(console.wait_for_text("; quitting", 120s)) << console.failure() << console.err();
  auto saved = console.wait_exit(kShutdownTimeout);
  ASSERT_TRUE(saved) << console.failure();
  ASSERT_EQ(*saved, 0) << console.err();
  std::this_thread::sleep_for(3s);  // time the clone's clock must catch up on

  GuestConsole clone;
  ASSERT_TRUE(
      clone.start({HOSTVISOR_PATH, "--log-level", "info", "run", "--seccomp=kill", "--restore", snapshot, "--clone"}))
      << clone.failure();
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (clone.err().find("set the guest's clock to the host's after restoring a clone") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    clone.read_for(200ms);
  EXPECT_NE(clone.err().find("reseeded the guest's RNG with 64 bytes from the host after restoring a clone"),
            std::string::npos)
      << clone.err();
  EXPECT_NE(clone.err().find("set the guest's clock to the host's after restoring a clone"), std::string::npos)
      << clone.err();
  const auto offset = guest_clock_offset_s(client);
  ASSERT_TRUE(offset);
  EXPECT_LT(std::abs(*offset), 1.0) << "the clone's clock is " << *offset << " s off";

  // Power off through the agent: hostvisor ends with status 0.
  ASSERT_TRUE(client.shutdown().ok());
  const auto status = clone.wait_exit(kShutdownTimeout);
  ASSERT_TRUE(status) << clone.failure();
  EXPECT_EQ(*status, 0) << clone.err();
}

}  // namespace
}  // namespace hostvisor::testing
