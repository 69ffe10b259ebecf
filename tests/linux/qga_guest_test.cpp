// qemu-guest-agent compatibility, end to end and on one boot: the default
// guest's kernel and initramfs plus Debian's qemu-ga (the host's package with
// its libraries, appended by build_qga_initramfs), on the software CPU with
// `--qga SOCKET`. Every check goes through the user's own command,
// `hostvisor agent --qga SOCKET ...`: ping, info, exec (output and exit
// status), a file written in and read back, set-time, the clear refusal of a
// terminal; then hostvisor's own clock sync through qemu-ga (the machine has
// no vsock device, so after Ctrl-A p, p it sets the guest's clock with
// guest-set-time); then a snapshot and a restore without --qga, which brings
// the port back on its socket; and a shutdown that ends the restored VM.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <regex>
#include <thread>

#include "guest/default_guest/default_guest.h"
#include "tests/linux/guest_console.h"
#include "tests/linux/qga_initramfs.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};
constexpr seconds kQgaStartTimeout{60};
constexpr seconds kShutdownTimeout{90};

const std::regex kBanner(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\.)");

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

// `hostvisor agent --qga SOCKET ARGS`, bounded in time (the shell's timeout
// kills it, so no child outlives the test).
CommandResult agent(const std::string& socket, const std::string& args) {
  CommandResult result;
  const std::string command =
      "timeout -s KILL 120 " + std::string(HOSTVISOR_PATH) + " agent --qga " + socket + " " + args + " </dev/null 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

long long host_unix_seconds() {
  return std::chrono::duration_cast<seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The guest's clock minus the host's, in whole seconds, through qemu-ga (or
// nullopt: the port is busy, say with hostvisor's own clock sync).
std::optional<long long> guest_clock_offset(const std::string& socket) {
  CommandResult date = agent(socket, "exec -- date +%s");
  if (date.status != 0 || date.output.empty() || !std::isdigit(static_cast<unsigned char>(date.output[0])))
    return std::nullopt;
  return std::stoll(date.output) - host_unix_seconds();
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(QemuGuestAgent, PingInfoExecFilesTimeAndShutdownThroughTheQgaPort) {
  if (::access(kQemuGaPath, X_OK) != 0)
    GTEST_FAIL() << kQemuGaPath << " is missing: install Debian's qemu-guest-agent (scripts/setup-host.sh does)";
  auto guest = guest::prepare_default_guest({});
  ASSERT_TRUE(guest.ok()) << guest.error().message();
  ScratchDir scratch{"qga-test"};
  ASSERT_FALSE(scratch.path.empty());
  const fs::path dir = scratch.path;
  const std::string initrd = (dir / "qga-initrd.img").string();
  auto built = build_qga_initramfs(guest->initrd_path, initrd);
  ASSERT_TRUE(built.ok()) << built.error().message();
  const std::string socket = (dir / "qga.sock").string();
  const std::string snapshot = (dir / "snapshot").string();

  GuestConsole console;
  ASSERT_TRUE(console.start(
      {HOSTVISOR_PATH,     "--log-level", "info", "run",      "--accel",      "emu",   "--memory", "256M",  "--kernel",
       guest->kernel_path, "--initrd",    initrd, "--append", guest->cmdline, "--net", "none",     "--qga", socket,
       "--snapshot-dir",   snapshot}))
      << console.failure();
  auto banner = console.wait_for_regex(kBanner, kBootTimeout);
  ASSERT_TRUE(banner) << console.failure();
  const std::string release = (*banner)[1];
  ASSERT_TRUE(console.wait_for_text("qga-start: qemu-ga on /dev/vport", kQgaStartTimeout)) << console.failure() << "\n"
                                                                                           << qga_start_script();

  // ping: the first conversation, through guest-sync-delimited.
  CommandResult ping = agent(socket, "ping");
  ASSERT_EQ(ping.status, 0) << ping.output;

  // info: guest-info, guest-get-osinfo and the rest.
  CommandResult info = agent(socket, "info");
  ASSERT_EQ(info.status, 0) << info.output;
  EXPECT_NE(info.output.find("qemu-guest-agent 7."), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("kernel:   " + release), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("hostvisor qemu-ga test guest"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("lo "), std::string::npos) << "loopback in the interfaces\n" << info.output;

  // exec: guest-exec and guest-exec-status, output and status.
  CommandResult uname = agent(socket, "exec -- uname -r");
  EXPECT_EQ(uname.status, 0) << uname.output;
  EXPECT_EQ(uname.output, release + "\n");
  CommandResult failing = agent(socket, "exec -- sh -c 'echo to-stdout; echo to-stderr >&2; exit 3'");
  EXPECT_EQ(failing.status, 3) << failing.output;
  EXPECT_NE(failing.output.find("to-stdout\n"), std::string::npos) << failing.output;
  EXPECT_NE(failing.output.find("to-stderr\n"), std::string::npos) << failing.output;

  // A terminal is what qemu-ga cannot give: the command says so.
  CommandResult terminal = agent(socket, "exec -t -- sh");
  EXPECT_NE(terminal.status, 0);
  EXPECT_NE(terminal.output.find("not supported by qemu-guest-agent: a terminal"), std::string::npos)
      << terminal.output;

  // Files: in with guest-file-write (several chunks), back with guest-file-read.
  std::string content(300 * 1024, '\0');
  std::mt19937 random(42);
  for (char& c : content) c = static_cast<char>(random());
  const fs::path in = dir / "in.bin", out = dir / "out.bin";
  std::ofstream(in, std::ios::binary) << content;
  CommandResult copy_in = agent(socket, "cp " + in.string() + " vm:/tmp/copied.bin");
  ASSERT_EQ(copy_in.status, 0) << copy_in.output;
  CommandResult size = agent(socket, "exec -- stat -c %s /tmp/copied.bin");
  EXPECT_EQ(size.output, std::to_string(content.size()) + "\n");
  CommandResult copy_out = agent(socket, "cp vm:/tmp/copied.bin " + out.string());
  ASSERT_EQ(copy_out.status, 0) << copy_out.output;
  EXPECT_TRUE(read_file(out) == content) << "the file came back different";

  // set-time: put the guest's clock in 2001, then have it set from the host's.
  CommandResult wrong = agent(socket, "exec -- date -s @1000000000");
  ASSERT_EQ(wrong.status, 0) << wrong.output;
  CommandResult sync = agent(socket, "time-sync");
  ASSERT_EQ(sync.status, 0) << sync.output;
  CommandResult date = agent(socket, "exec -- date +%s");
  ASSERT_EQ(date.status, 0) << date.output;
  const long long guest_now = std::stoll(date.output);
  const long long host_now = host_unix_seconds();
  EXPECT_LE(std::llabs(guest_now - host_now), 5) << "guest " << guest_now << ", host " << host_now;

  // hostvisor's automatic clock sync falls back to qemu-ga: the machine has
  // no vsock device, so after a pause it sets the clock with guest-set-time.
  CommandResult again_wrong = agent(socket, "exec -- date -s @1000000000");
  ASSERT_EQ(again_wrong.status, 0) << again_wrong.output;
  ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
  ASSERT_TRUE(console.wait_for_text("VM paused", seconds(30))) << console.failure();
  std::this_thread::sleep_for(seconds(1));
  ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
  ASSERT_TRUE(console.wait_for_text("VM resumed", seconds(30))) << console.failure();
  const std::string synced = "guest agent (qemu-guest-agent): set the guest's clock to the host's after a pause";
  for (auto until = std::chrono::steady_clock::now() + seconds(60);
       console.err().find(synced) == std::string::npos && std::chrono::steady_clock::now() < until;)
    console.read_for(std::chrono::milliseconds(200));
  ASSERT_NE(console.err().find(synced), std::string::npos) << console.err();
  std::optional<long long> offset;
  for (int i = 0; i < 10 && !(offset = guest_clock_offset(socket)); ++i) std::this_thread::sleep_for(seconds(1));
  ASSERT_TRUE(offset) << "no date from the guest after the sync";
  EXPECT_LE(std::llabs(*offset), 5) << "the guest's clock is " << *offset << " s off after the sync";

  // Save and quit (Ctrl-A S), then restore without --qga: the snapshot
  // kept the port's socket, so the same command reaches qemu-ga again.
  ASSERT_TRUE(console.send_keys("\x01S")) << console.failure();
  ASSERT_TRUE(console.wait_for_text("; quitting", seconds(120))) << console.failure() << console.err();
  auto saved = console.wait_exit(kShutdownTimeout);
  ASSERT_TRUE(saved) << console.failure();
  ASSERT_EQ(*saved, 0) << console.err();
  ASSERT_FALSE(fs::exists(socket)) << "the first VM left its socket behind";

  GuestConsole restored;
  ASSERT_TRUE(restored.start({HOSTVISOR_PATH, "--log-level", "info", "run", "--restore", snapshot}))
      << restored.failure();
  CommandResult restored_ping;
  for (int i = 0; i < 30; ++i) {
    restored.read_for(std::chrono::milliseconds(500));
    if ((restored_ping = agent(socket, "ping")).status == 0) break;
  }
  ASSERT_EQ(restored_ping.status, 0) << restored_ping.output << "\n" << restored.err();
  EXPECT_NE(restored.err().find("qemu-guest-agent port org.qemu.guest_agent.0: listening on " + socket),
            std::string::npos)
      << restored.err();

  // shutdown: guest-shutdown powers the VM off; hostvisor ends with 0.
  CommandResult shutdown;
  for (int i = 0; i < 10 && (shutdown = agent(socket, "shutdown")).status != 0; ++i)
    std::this_thread::sleep_for(seconds(1));  // the restore's own clock sync may hold the port for a moment
  EXPECT_EQ(shutdown.status, 0) << shutdown.output;
  auto status = restored.wait_exit(kShutdownTimeout);
  ASSERT_TRUE(status) << restored.failure();
  EXPECT_EQ(*status, 0);
}

}  // namespace
}  // namespace hostvisor::testing
