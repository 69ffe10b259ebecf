// The balloon and free page reporting with Linux's own virtio_balloon driver,
// on the default guest, with the host's memory measured where it lives: the
// blocks of hostvisor's RAM memfd (or, for private RAM, its anonymous RSS),
// never the mapped RSS (a hole punched in a mapped file leaves that alone).
//
// One boot with the default guest's own balloon (free page reporting on):
// 600 MiB written to a tmpfs and removed come back to the host within 10 s;
// Ctrl-A b inflates 200 MiB, which leaves MemTotal (no deflate-on-OOM) and
// shows in the driver's counters and sysfs; deflating gives it all back.
// A second boot, on shared RAM (a memfd), with deflate-on-OOM and no
// reporting: inflated pages the guest had dirtied leave the memfd, and a
// guest pushed past its memory takes pages out of the balloon instead of
// OOM-killing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "tests/linux/guest_console.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};
constexpr seconds kCommandTimeout{120};
constexpr uint64_t kMiB = 1 << 20;

// What the host really holds of hostvisor `pid`'s guest RAM.
uint64_t host_ram_bytes(pid_t pid) {
  const fs::path fds = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fds, ec)) {
    const std::string target = fs::read_symlink(entry.path(), ec).string();
    if (ec || target.rfind("/memfd:hostvisor-ram", 0) != 0) continue;
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) == 0) return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  // No RAM memfd: private anonymous RAM, counted in RssAnon.
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8)) * 1024;
  ADD_FAILURE() << "no guest RAM found for process " << pid;
  return 0;
}

uint64_t guest_number(GuestConsole& console, const std::string& command) {
  const std::string out = guest_ok(console, command, kCommandTimeout);
  try {
    return std::stoull(out);
  } catch (...) {
    ADD_FAILURE() << "`" << command << "` printed no number: " << out;
    return 0;
  }
}

uint64_t mem_total_kib(GuestConsole& console) {
  return guest_number(console, "awk '/^MemTotal:/ {print $2}' /proc/meminfo");
}

// Pages in the balloon, by the driver's own counters (Linux 6.1's driver
// has no sysfs attribute for its size; these are in /proc/vmstat).
constexpr const char* kBalloonPages =
    "awk '/^balloon_inflate/ {i=$2} /^balloon_deflate/ {d=$2} END {print i-d}' /proc/vmstat";

// Ctrl-A b, then the size, on the host's console; waits for the answer.
void set_balloon(GuestConsole& console, const std::string& size, const std::string& expected_answer) {
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(
      console.send_keys("\x01"
                        "b"))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("New size", seconds(10))) << console.failure();
  ASSERT_TRUE(console.send_line(size)) << console.failure();
  ASSERT_TRUE(console.wait_for_text(expected_answer, seconds(10))) << console.failure();
  // The Enter that ended the answer went to the host, not the guest: ask for a prompt.
  ASSERT_TRUE(console.send_line("")) << console.failure();
}

// Waits in the guest until the balloon holds `pages`.
void wait_for_balloon_pages(GuestConsole& console, uint64_t pages) {
  const std::string check = "[ $(" + std::string(kBalloonPages) + ") -eq " + std::to_string(pages) + " ]";
  guest_ok(console, "for i in $(seq 300); do " + check + " && break; sleep 0.2; done; " + check, kCommandTimeout);
}

std::vector<std::string> hostvisor_args(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--accel", "emu", "--net", "none"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

void boot(GuestConsole& console, const std::vector<std::string>& extra) {
  ASSERT_TRUE(console.start(hostvisor_args(extra))) << console.failure();
  ASSERT_TRUE(console.wait_for_text("Type 'poweroff' to stop.", kBootTimeout)) << console.failure();
  guest_ok(console, "test -d /sys/bus/virtio/drivers/virtio_balloon", kCommandTimeout);
}

void power_off(GuestConsole& console) {
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(90));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
}

TEST(LinuxBalloon, FreePageReportingReturnsFreedMemoryAndTheBalloonInflatesAndDeflates) {
  GuestConsole console;
  boot(console, {"--memory", "1G"});  // the default guest's balloon: reporting on, no deflate-on-OOM
  if (HasFatalFailure()) return;
  // The driver took the statistics queue and free page reporting (bits 1 and 5).
  const std::string features = guest_ok(console, "cat /sys/bus/virtio/drivers/virtio_balloon/virtio*/features", kCommandTimeout);
  ASSERT_GE(features.size(), 6u) << features;
  EXPECT_EQ(features[1], '1') << "VIRTIO_BALLOON_F_STATS_VQ not negotiated: " << features;
  EXPECT_EQ(features[5], '1') << "VIRTIO_BALLOON_F_REPORTING not negotiated: " << features;
  EXPECT_EQ(features[2], '0') << "deflate-on-OOM was not asked for: " << features;

  // Free page reporting: 600 MiB written into a tmpfs, then removed.
  guest_ok(console, "mount -t tmpfs -o size=700m tmpfs /mnt && dd if=/dev/zero of=/mnt/fill bs=1M count=600 2>&1", kCommandTimeout);
  const uint64_t filled = host_ram_bytes(console.pid());
  guest_ok(console, "rm /mnt/fill", kCommandTimeout);
  const auto removed = std::chrono::steady_clock::now();
  uint64_t now = filled;
  while (std::chrono::steady_clock::now() - removed < seconds(10) && filled - now < 500 * kMiB) {
    std::this_thread::sleep_for(milliseconds(100));
    now = host_ram_bytes(console.pid());
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - removed).count();
  EXPECT_GE(filled - now, 500 * kMiB) << "within 10 s of the rm the host got back only " << (filled - now) / kMiB
                                      << " MiB of " << filled / kMiB << " MiB";
  std::printf("free page reporting: %llu MiB back in %.1f s\n", static_cast<unsigned long long>((filled - now) / kMiB),
              took);

  // Inflating by 200 MiB: the guest's MemTotal falls by exactly that.
  const uint64_t total = mem_total_kib(console);
  set_balloon(console, "200M", "balloon target 200 MiB");
  if (HasFatalFailure()) return;
  wait_for_balloon_pages(console, 200 * 256);
  EXPECT_EQ(total - mem_total_kib(console), 200u * 1024) << "MemTotal did not fall by the balloon's size";

  // Deflating gives it all back.
  set_balloon(console, "0", "balloon target 0 bytes");
  if (HasFatalFailure()) return;
  wait_for_balloon_pages(console, 0);
  EXPECT_EQ(mem_total_kib(console), total);
  power_off(console);
}

TEST(LinuxBalloon, InflatedPagesGoBackToTheHostAndDeflateOnOomSparesTheGuest) {
  GuestConsole console;
  // Shared RAM (a memfd) this time: discards punch holes in the file.
  boot(console, {"--memory", "512M,shared=on", "--balloon=deflate-on-oom=on,free-page-reporting=off"});
  if (HasFatalFailure()) return;
  const std::string features = guest_ok(console, "cat /sys/bus/virtio/drivers/virtio_balloon/virtio*/features", kCommandTimeout);
  ASSERT_GE(features.size(), 6u) << features;
  EXPECT_EQ(features[2], '1') << "VIRTIO_BALLOON_F_DEFLATE_ON_OOM not negotiated: " << features;
  EXPECT_EQ(features[5], '0') << "reporting was turned off: " << features;

  // Most of the guest's free memory dirtied, then freed: the host still
  // holds it (nothing reports it).
  guest_ok(console,
           "mount -t tmpfs -o size=450m tmpfs /mnt && dd if=/dev/zero of=/mnt/fill bs=1M count=400 2>&1 && "
           "rm /mnt/fill", kCommandTimeout);
  const uint64_t before = host_ram_bytes(console.pid());
  const uint64_t total = mem_total_kib(console);

  // A 300 MiB balloon is mostly pages the guest had dirtied: they go back.
  set_balloon(console, "300M", "balloon target 300 MiB");
  if (HasFatalFailure()) return;
  wait_for_balloon_pages(console, 300 * 256);
  const uint64_t after = host_ram_bytes(console.pid());
  EXPECT_GE(before - std::min(before, after), 200 * kMiB)
      << "inflating 300 MiB gave back only " << (before - std::min(before, after)) / kMiB << " MiB";
  EXPECT_EQ(mem_total_kib(console), total) << "with deflate-on-OOM the balloon's pages stay in MemTotal";

  // Under pressure the guest takes pages back from the balloon rather than
  // OOM-kill: 250 MiB more than it has free, in an unswappable tmpfs.
  guest_ok(console, "dd if=/dev/zero of=/mnt/fill bs=1M count=250 2>&1", kCommandTimeout);
  const uint64_t left = guest_number(console, kBalloonPages);
  EXPECT_LT(left, 300u * 256) << "the balloon was not deflated under memory pressure";
  EXPECT_EQ(guest_ok(console, "dmesg | grep -c 'Killed process' || true", kCommandTimeout), "0\n") << "the guest OOM-killed";
  power_off(console);
}

}  // namespace
}  // namespace hostvisor::testing
