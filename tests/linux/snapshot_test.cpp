// Snapshots of the default guest on the software CPU: a shell session with
// a variable, a file in tmpfs and a background counter is snapshotted from
// the console (Ctrl-A S), and two restores of that one snapshot each find it
// all as it was, go on independently, and keep the guest's monotonic clock
// continuous (no jump over the time the snapshot sat on disk).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "tests/linux/default_guest_snapshot.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};
constexpr seconds kCommandTimeout{60};
constexpr seconds kShutdownTimeout{90};

// The output of a command that prints one line, without its newline.
std::string guest_line(GuestConsole& console, const std::string& command) {
  std::string out = guest_ok(console, command);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

double uptime(GuestConsole& console) {
  const std::string text = guest_line(console, "cut -d' ' -f1 /proc/uptime");
  return text.empty() ? -1 : std::strtod(text.c_str(), nullptr);
}

long counter(GuestConsole& console) {
  const std::string text = guest_line(console, "cat /tmp/count");
  return text.empty() ? -1 : std::strtol(text.c_str(), nullptr, 10);
}

// Starts `hostvisor run ARGS` on `console`.
void start_run(GuestConsole& console, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run"};
  argv.insert(argv.end(), args.begin(), args.end());
  ASSERT_TRUE(console.start(argv)) << console.failure();
}

// A restore of a snapshot taken at a prompt, which the restored run does not
// print again: a bare line makes the shell print one (the next command waits for it).
void start_restore_at_prompt(GuestConsole& console, const std::vector<std::string>& args) {
  start_run(console, args);
  if (::testing::Test::HasFatalFailure()) return;
  ASSERT_TRUE(console.send_line("")) << console.failure();
}

// What a restored guest must find, and its clock relative to the snapshot's.
void expect_session_restored(GuestConsole& console, long counter_at_snapshot, double uptime_at_snapshot) {
  EXPECT_EQ(guest_line(console, "echo $HV_VAR"), "kept-42");
  EXPECT_EQ(guest_line(console, "cat /tmp/file"), "data in tmpfs");
  const double restored_uptime = uptime(console);
  // The snapshot sat on disk for seconds; the guest's clock did not see them.
  EXPECT_GE(restored_uptime, uptime_at_snapshot);
  EXPECT_LT(restored_uptime, uptime_at_snapshot + 4.0) << "the guest's monotonic clock jumped at the restore";
  const long first = counter(console);
  EXPECT_GE(first, counter_at_snapshot);
  std::this_thread::sleep_for(seconds(2));
  EXPECT_GT(counter(console), first) << "the background counter stopped";
  // The NIC on the user-mode NAT works on (the NAT's state was restored).
  EXPECT_NE(guest_line(console,
                       "for i in $(seq 300); do ip route show default | grep -q via && break; sleep 0.2; done; "
                       "ping -c 1 -W 5 10.0.2.2")
                .find("1 packets received"),
            std::string::npos);
}

TEST(LinuxGuestSnapshot, RestoresTheShellSessionTwiceFromOneSnapshot) {
  ScratchDir scratch{"snapshot-test"};
  const fs::path snapshot = scratch.path / "session";
  long counter_at_snapshot = 0;
  double uptime_at_snapshot = 0;
  {
    // The session starts in a clone of the shared snapshot of the booted
    // guest, so this snapshot is of a restored VM.
    DefaultGuestSnapshot booted;
    ASSERT_TRUE(booted.ok()) << booted.error();
    GuestConsole console;
    ASSERT_TRUE(booted.start_clone(console, {"--snapshot-dir", snapshot.string()})) << console.failure();
    guest_line(console, "export HV_VAR=kept-42");
    guest_line(console, "echo 'data in tmpfs' > /tmp/file");
    guest_line(console, "(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done) & true");
    std::this_thread::sleep_for(seconds(1));
    counter_at_snapshot = counter(console);
    EXPECT_GT(counter_at_snapshot, 0);
    uptime_at_snapshot = uptime(console);
    // Snapshotted while `sleep 1` runs, so each restore's first output is
    // the prompt that follows it: the terminal stand-in once answered that
    // prompt's cursor query as row 1, which busybox misreads, and the first
    // command typed was swallowed.
    ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
    ASSERT_TRUE(console.send_line("echo sleep\"\"ing; sleep 1")) << console.failure();
    ASSERT_TRUE(console.wait_for_text("sleeping\r\n", kCommandTimeout)) << console.failure();
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
    // Taken while a command ran: the restored shell prints its prompt as
    // the run's first output, and the next command is typed as soon as it shows.
    start_run(first, {"--restore", snapshot.string(), "--restore-mode", "map"});
    if (HasFatalFailure()) return;
    expect_session_restored(first, counter_at_snapshot, uptime_at_snapshot);
    // This run changes what the next restore must not see.
    guest_line(first, "export HV_VAR=changed; echo changed > /tmp/file");
    EXPECT_EQ(guest_line(first, "echo $HV_VAR; cat /tmp/file"), "changed\nchanged");
    ASSERT_TRUE(first.send_line("poweroff")) << first.failure();
    const auto status = first.wait_exit(kShutdownTimeout);
    ASSERT_TRUE(status) << first.failure();
    EXPECT_EQ(*status, 0) << first.err();
  }
  {
    GuestConsole second;
    start_run(second, {"--restore", snapshot.string(), "--restore-mode", "copy"});
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

namespace hostvisor::testing {
namespace {

std::string host_output(const std::string& command, int* status = nullptr) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int result = ::pclose(pipe);
  if (status) *status = WIFEXITED(result) ? WEXITSTATUS(result) : -1;
  return output;
}

// The first sector of the guest's /dev/vda, up to the first NUL.
std::string first_sector(GuestConsole& console) {
  return guest_line(console, "dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d '\\000'");
}

void write_first_sector(GuestConsole& console, const std::string& text) {
  guest_line(console, "printf '" + text + "' | dd of=/dev/vda bs=512 conv=sync 2>/dev/null && sync");
}

void expect_qemu_img_check_clean(const fs::path& image) {
  int status = -1;
  const std::string out = host_output("qemu-img check '" + image.string() + "'", &status);
  EXPECT_EQ(status, 0) << "qemu-img check " << image << ":\n" << out;
}

// A disk written before and after a snapshot: the snapshot keeps it as it
// was, the running guest goes on in an overlay, and two clones running at
// once each write their own overlay on the frozen image, which never changes.
TEST(LinuxGuestSnapshot, DisksFreezeAtTheSnapshotAndClonesWriteTheirOwnOverlays) {
  ScratchDir scratch{"snapshot-test"};
  const fs::path disk = scratch.path / "disk.raw";
  const fs::path snapshot = scratch.path / "with-disk";
  { std::ofstream(disk).close(); }
  fs::resize_file(disk, 16 << 20);
  {
    GuestConsole console;
    ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--net", "none", "--disk",
                               disk.string() + ",format=raw", "--snapshot-dir", snapshot.string()}))
        << console.failure();
    ASSERT_TRUE(console.wait_for_text("Type 'poweroff' to stop.", kBootTimeout)) << console.failure();
    write_first_sector(console, "before the snapshot");
    ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
    ASSERT_TRUE(console.send_keys("\x01s")) << console.failure();
    ASSERT_TRUE(console.wait_for_regex(std::regex(R"(\[hostvisor: snapshot written to [^\]]*\])"), kCommandTimeout))
        << console.failure() << "\nstderr:\n"
        << console.err();
    ASSERT_TRUE(console.send_line("")) << console.failure();  // a prompt again, after the snapshot's line
    write_first_sector(console, "after the snapshot");
    EXPECT_EQ(first_sector(console), "after the snapshot");
    ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
    const auto status = console.wait_exit(kShutdownTimeout);
    ASSERT_TRUE(status) << console.failure();
    EXPECT_EQ(*status, 0) << console.err();
  }
  // The disk's name now holds the overlay the guest went on in.
  EXPECT_NE(host_output("qemu-img info '" + disk.string() + "'").find("backing file:"), std::string::npos);
  expect_qemu_img_check_clean(disk);
  // QEMU reads the chain as the guest left it.
  const fs::path flat = scratch.path / "flat.raw";
  int converted = -1;
  const std::string convert_out =
      host_output("qemu-img convert -O raw '" + disk.string() + "' '" + flat.string() + "'", &converted);
  ASSERT_EQ(converted, 0) << convert_out;
  EXPECT_EQ(host_output("head -c 18 '" + flat.string() + "'"), "after the snapshot");

  fs::path frozen;
  for (const auto& entry : fs::directory_iterator(snapshot))
    if (entry.path().filename().string().rfind("disk0-", 0) == 0) frozen = entry.path();
  ASSERT_FALSE(frozen.empty()) << "no frozen disk image in the snapshot";
  EXPECT_EQ(fs::status(frozen).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  const std::string frozen_sum = host_output("sha256sum < '" + frozen.string() + "'");

  {
    GuestConsole first, second;
    start_restore_at_prompt(first, {"--restore", snapshot.string(), "--clone"});
    start_restore_at_prompt(second, {"--restore", snapshot.string(), "--clone"});
    if (HasFatalFailure()) return;
    for (GuestConsole* clone : {&first, &second})
      EXPECT_EQ(first_sector(*clone), "before the snapshot") << clone->err();
    write_first_sector(first, "written by clone one");
    write_first_sector(second, "written by clone two");
    EXPECT_EQ(first_sector(first), "written by clone one");
    EXPECT_EQ(first_sector(second), "written by clone two");
    for (GuestConsole* clone : {&first, &second}) {
      ASSERT_TRUE(clone->send_line("poweroff")) << clone->failure();
      const auto status = clone->wait_exit(kShutdownTimeout);
      ASSERT_TRUE(status) << clone->failure();
      EXPECT_EQ(*status, 0) << clone->err();
    }
  }
  EXPECT_EQ(host_output("sha256sum < '" + frozen.string() + "'"), frozen_sum) << "the frozen image changed";
  int overlays = 0;
  for (const auto& entry : fs::directory_iterator(scratch.path)) {
    if (entry.path().filename().string().find(".run-") == std::string::npos) continue;
    ++overlays;
    expect_qemu_img_check_clean(entry.path());
  }
  EXPECT_EQ(overlays, 2) << "each clone writes an overlay of its own";

  // A frozen image changed behind the snapshot's back is refused.
  fs::permissions(frozen, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(frozen, std::ios::app) << "x";
  int status = -1;
  const std::string refused =
      host_output(std::string(HOSTVISOR_PATH) + " run --restore '" + snapshot.string() + "' </dev/null", &status);
  EXPECT_EQ(status, 1) << refused;
  EXPECT_NE(refused.find("was changed after the snapshot"), std::string::npos) << refused;
}

}  // namespace
}  // namespace hostvisor::testing
