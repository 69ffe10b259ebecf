// Snapshots of the default guest on the software CPU: a shell session with
// a variable, a file in tmpfs and a background counter is snapshotted from
// the console (Ctrl-A S), and two restores of that one snapshot each find it
// all as it was, go on independently, and keep the guest's monotonic clock
// continuous (no jump over the time the snapshot sat on disk).
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <thread>

#include "tests/linux/guest_console.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};
constexpr seconds kCommandTimeout{60};
constexpr seconds kShutdownTimeout{90};

struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "hv-snapshot-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data())) path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

std::string guest_ok(GuestConsole& console, const std::string& command) {
  auto result = console.run(command, kCommandTimeout);
  if (!result) {
    ADD_FAILURE() << "guest command `" << command << "`: " << console.failure();
    return {};
  }
  EXPECT_EQ(result->status, 0) << "guest command `" << command << "` failed:\n" << result->output;
  while (!result->output.empty() && result->output.back() == '\n') result->output.pop_back();
  return result->output;
}

double uptime(GuestConsole& console) {
  const std::string text = guest_ok(console, "cut -d' ' -f1 /proc/uptime");
  return text.empty() ? -1 : std::strtod(text.c_str(), nullptr);
}

long counter(GuestConsole& console) {
  const std::string text = guest_ok(console, "cat /tmp/count");
  return text.empty() ? -1 : std::strtol(text.c_str(), nullptr, 10);
}

// A restore of `snapshot`: the shell answers a bare line with its prompt.
void start_restore(GuestConsole& console, const fs::path& snapshot, const std::string& mode) {
  ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--restore", snapshot.string(), "--restore-mode", mode}))
      << console.failure();
  ASSERT_TRUE(console.send_line("")) << console.failure();
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout))
      << "the restored shell does not answer: " << console.failure() << "\nstderr:\n"
      << console.err();
}

// What a restored guest must find, and its clock relative to the snapshot's.
void expect_session_restored(GuestConsole& console, long counter_at_snapshot, double uptime_at_snapshot) {
  EXPECT_EQ(guest_ok(console, "echo $HV_VAR"), "kept-42");
  EXPECT_EQ(guest_ok(console, "cat /tmp/file"), "data in tmpfs");
  const double restored_uptime = uptime(console);
  // The snapshot sat on disk for seconds; the guest's clock did not see them.
  EXPECT_GE(restored_uptime, uptime_at_snapshot);
  EXPECT_LT(restored_uptime, uptime_at_snapshot + 4.0) << "the guest's monotonic clock jumped at the restore";
  const long first = counter(console);
  EXPECT_GE(first, counter_at_snapshot);
  std::this_thread::sleep_for(seconds(2));
  EXPECT_GT(counter(console), first) << "the background counter stopped";
}

TEST(LinuxGuestSnapshot, RestoresTheShellSessionTwiceFromOneSnapshot) {
  ScratchDir scratch;
  const fs::path snapshot = scratch.path / "session";
  long counter_at_snapshot = 0;
  double uptime_at_snapshot = 0;
  {
    GuestConsole console;
    ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--snapshot-dir", snapshot.string()}))
        << console.failure();
    ASSERT_TRUE(console.wait_for_text("Type 'poweroff' to stop.", kBootTimeout)) << console.failure();
    guest_ok(console, "export HV_VAR=kept-42");
    guest_ok(console, "echo 'data in tmpfs' > /tmp/file");
    guest_ok(console, "(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done) & true");
    std::this_thread::sleep_for(seconds(1));
    counter_at_snapshot = counter(console);
    EXPECT_GT(counter_at_snapshot, 0);
    uptime_at_snapshot = uptime(console);
    ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
    ASSERT_TRUE(console.send_keys("\x01S")) << console.failure();
    ASSERT_TRUE(
        console.wait_for_regex(std::regex(R"(\[hostvisor: snapshot written to [^\]]*; quitting\])"), kCommandTimeout))
        << console.failure() << "\nstderr:\n"
        << console.err();
    const auto status = console.wait_exit(kShutdownTimeout);
    ASSERT_TRUE(status) << console.failure();
    EXPECT_EQ(*status, 0) << console.err();
  }
  ASSERT_TRUE(fs::exists(snapshot / "header"));
  std::this_thread::sleep_for(seconds(5));  // time the guest must not see

  {
    GuestConsole first;
    start_restore(first, snapshot, "map");
    if (HasFatalFailure()) return;
    expect_session_restored(first, counter_at_snapshot, uptime_at_snapshot);
    // This run changes what the next restore must not see.
    guest_ok(first, "export HV_VAR=changed; echo changed > /tmp/file");
    EXPECT_EQ(guest_ok(first, "echo $HV_VAR; cat /tmp/file"), "changed\nchanged");
    ASSERT_TRUE(first.send_line("poweroff")) << first.failure();
    const auto status = first.wait_exit(kShutdownTimeout);
    ASSERT_TRUE(status) << first.failure();
    EXPECT_EQ(*status, 0) << first.err();
  }
  {
    GuestConsole second;
    start_restore(second, snapshot, "copy");
    if (HasFatalFailure()) return;
    expect_session_restored(second, counter_at_snapshot, uptime_at_snapshot);
    ASSERT_TRUE(second.send_line("poweroff")) << second.failure();
    const auto status = second.wait_exit(kShutdownTimeout);
    ASSERT_TRUE(status) << second.failure();
    EXPECT_EQ(*status, 0) << second.err();
  }
}

}  // namespace
}  // namespace hostvisor::testing
