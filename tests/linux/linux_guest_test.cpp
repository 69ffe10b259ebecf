// Boots the default guest — Debian's stock cloud kernel with hostvisor's
// busybox initramfs — on the software CPU and checks, from the guest's own
// shell, that the machine hostvisor built is what Linux sees: the CPU count,
// the virtio PCI transport with the rng and block drivers bound, a disk that
// keeps its data across a guest reboot and that the host can read back, and
// an ACPI power-off that ends hostvisor with status 0.
//
// The guest lives in the user's real cache (built on first use, reused
// after), so the first run on a fresh machine also tests building it.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "tests/linux/guest_console.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};     // kernel start to the shell prompt, software CPU
constexpr seconds kCommandTimeout{60};   // one shell command
constexpr seconds kShutdownTimeout{90};  // poweroff to hostvisor's exit

const std::regex kBanner(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\. Type 'poweroff' to stop\.)");

// Runs a host command line through the shell; returns its exit status and
// fills `output` with stdout+stderr.
int host_command(const std::string& command, std::string* output) {
  // e2fsprogs live in /usr/sbin, which a plain user's PATH may lack.
  FILE* pipe = ::popen(("PATH=/usr/sbin:/sbin:$PATH " + command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output->append(buf, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Makes `image`, an ext4 file system of `size` holding one file, `path`
// (relative to its root) with `content`. Returns what went wrong, or "".
std::string make_ext4_image(const fs::path& image, const std::string& size, const std::string& path,
                            const std::string& content) {
  const fs::path content_dir = image.parent_path() / (image.filename().string() + ".content");
  fs::create_directories((content_dir / path).parent_path());
  std::ofstream(content_dir / path) << content;
  std::string out;
  if (host_command("mkfs.ext4 -q -d '" + content_dir.string() + "' '" + image.string() + "' " + size, &out) != 0)
    return "mkfs.ext4 " + image.string() + ": " + out;
  return "";
}

// A scratch directory removed at the end of the test.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::string tmpl = (fs::temp_directory_path() / "hv-linux-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data())) path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

std::vector<std::string> hostvisor_args(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--accel", "emu"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// Waits for the banner and checks the CPU count it reports.
void expect_banner(GuestConsole& console, int cpus) {
  auto banner = console.wait_for_regex(kBanner, kBootTimeout);
  ASSERT_TRUE(banner) << console.failure();
  EXPECT_EQ((*banner)[2].str(), std::to_string(cpus)) << "the init script counted a different number of CPUs";
}

// Runs a guest command that must succeed; returns its output.
std::string guest_ok(GuestConsole& console, const std::string& command) {
  auto result = console.run(command, kCommandTimeout);
  if (!result) {
    ADD_FAILURE() << "guest command `" << command << "`: " << console.failure();
    return {};
  }
  EXPECT_EQ(result->status, 0) << "guest command `" << command << "` failed:\n" << result->output;
  return result->output;
}

void power_off_and_expect_status_0(GuestConsole& console) {
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(kShutdownTimeout);
  ASSERT_TRUE(status) << "after poweroff: " << console.failure();
  EXPECT_EQ(*status, 0) << "poweroff (ACPI S5) must end hostvisor with status 0; stderr:\n" << console.err();
}

TEST(LinuxGuest, OneCpuBootsAndPowersOff) {
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--cpus", "1", "--memory", "512M"}))) << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;

  EXPECT_EQ(guest_ok(console, "grep -c ^processor /proc/cpuinfo"), "1\n");
  guest_ok(console, "test -d /sys/bus/pci/drivers/virtio-pci");

  // Every virtio device with the driver bound to it; the rng (virtio device
  // ID 4) must be driven by virtio_rng.
  const std::string devices = guest_ok(
      console, "for d in /sys/bus/virtio/devices/virtio*; do echo \"$(cat $d/device) $(readlink $d/driver)\"; done");
  EXPECT_TRUE(std::regex_search(devices, std::regex(R"((^|\n)0x0004 \S*/virtio_rng\n)")))
      << "no virtio entropy device (0x0004) bound to virtio_rng; the guest saw:\n"
      << devices;
  // The console (ID 3) is there for hvc0 on every machine.
  EXPECT_TRUE(std::regex_search(devices, std::regex(R"((^|\n)0x0003 \S*/virtio_console\n)")))
      << "no virtio console (0x0003) bound to virtio_console; the guest saw:\n"
      << devices;
  // The kernel's hwrng core picked it up as its current source.
  EXPECT_NE(guest_ok(console, "cat /sys/class/misc/hw_random/rng_current").find("virtio_rng"), std::string::npos);

  power_off_and_expect_status_0(console);
}

// Ctrl-A p pauses the guest while its shell prints a counting sequence and
// pressed again resumes it, many times over, on two vCPUs (one of them
// usually halted in the idle loop). Each pause says where vCPU 0 stopped,
// read while paused; no output comes while paused; and once the
// hostvisor lines are taken out, the output is exactly the sequence:
// nothing lost, doubled or reordered across the pauses.
TEST(LinuxGuest, PauseAndResumeFromTheConsoleKeepTheOutputExact) {
  constexpr int kLines = 20000;
  constexpr int kMinPauses = 8;
  const std::regex paused(R"(\r\n\[hostvisor: VM paused, vCPU 0 at rip 0x([0-9a-f]+); Ctrl-A p resumes\]\r\n)");
  const std::string resumed = "\r\n[hostvisor: VM resumed]\r\n";

  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--cpus", "2", "--memory", "512M"}))) << console.failure();
  expect_banner(console, 2);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  // The markers are split in the typed line, so only the output has them joined.
  ASSERT_TRUE(console.send_line("echo @@BEGIN\"\"@@; i=0; while [ $i -lt " + std::to_string(kLines) +
                                " ]; do echo n$i; i=$((i+1)); done; echo @@END\"\"@@"))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("@@BEGIN@@", kCommandTimeout)) << console.failure();
  // Right after the marker: the read that found it may have taken lines
  // past it too (a loaded host hands over bigger chunks).
  const size_t begin = console.out().find("@@BEGIN@@") + std::string_view("@@BEGIN@@").size();

  int pauses = 0;
  while (console.out().find("@@END@@", begin) == std::string::npos) {
    ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
    auto line = console.wait_for_regex(paused, kCommandTimeout);
    ASSERT_TRUE(line) << "no pause line: " << console.failure();
    EXPECT_NE(std::stoull((*line)[1].str(), nullptr, 16), 0u) << "vCPU 0's registers were not read while paused";
    const size_t at_pause = console.out().size();
    console.read_for(std::chrono::milliseconds(300));
    EXPECT_EQ(console.out().size(), at_pause) << "the guest printed while paused:\n" << console.out().substr(at_pause);
    ASSERT_TRUE(console.send_keys("\x01p")) << console.failure();
    ASSERT_TRUE(console.wait_for_text(resumed, kCommandTimeout)) << "no resume line: " << console.failure();
    ++pauses;
    console.read_for(std::chrono::milliseconds(100 + 37 * (pauses % 5)));  // let it print a little
  }
  ASSERT_TRUE(console.wait_for_text("@@END@@", kCommandTimeout)) << console.failure();
  EXPECT_GE(pauses, kMinPauses) << "the sequence ended before the test paused it often enough";

  std::string output = console.out().substr(begin, console.out().rfind("@@END@@") - begin);
  output = std::regex_replace(output, paused, "");
  for (size_t at; (at = output.find(resumed)) != std::string::npos;) output.erase(at, resumed.size());
  output.erase(std::remove(output.begin(), output.end(), '\r'), output.end());
  std::string expected = "\n";  // the end of the @@BEGIN@@ line
  for (int i = 0; i < kLines; ++i) expected += "n" + std::to_string(i) + "\n";
  EXPECT_TRUE(output == expected)
      << pauses << " pauses; the output differs from the sequence at byte "
      << std::distance(output.begin(),
                       std::mismatch(output.begin(), output.end(), expected.begin(), expected.end()).first);
  std::printf("%d pauses while the guest printed %d lines\n", pauses, kLines);
  power_off_and_expect_status_0(console);
}

TEST(LinuxGuest, TwoCpusDiskSurvivesRebootAndHostReadsIt) {
  ScratchDir scratch;
  ASSERT_FALSE(scratch.path.empty());
  const fs::path image = scratch.path / "disk.img";
  const std::string host_text = "written by the host before boot 7f3a";
  const std::string guest_text = "written by the guest before reboot c91e";
  ASSERT_EQ(make_ext4_image(image, "64M", "data/host.txt", host_text + "\n"), "");
  std::string out;

  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--cpus", "2", "--memory", "512M", "--disk", image.string()})))
      << console.failure();
  expect_banner(console, 2);
  if (HasFatalFailure()) return;

  EXPECT_EQ(guest_ok(console, "grep -c ^processor /proc/cpuinfo"), "2\n");
  const std::string blk_driver = guest_ok(console, "readlink /sys/block/vda/device/driver");
  EXPECT_TRUE(std::regex_search(blk_driver, std::regex(R"(/virtio_blk\n$)"))) << blk_driver;
  EXPECT_EQ(guest_ok(console, "cat /sys/block/vda/size"), "131072\n") << "64 MiB is 131072 sectors";

  guest_ok(console, "mount /dev/vda /mnt");
  EXPECT_EQ(guest_ok(console, "cat /mnt/data/host.txt"), host_text + "\n");
  guest_ok(console, "echo '" + guest_text + "' > /mnt/data/guest.txt && sync");
  guest_ok(console, "umount /mnt");

  // Reboot: hostvisor rebuilds the machine and the same disk comes back.
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_line("reboot")) << console.failure();
  expect_banner(console, 2);
  if (HasFatalFailure()) return;
  EXPECT_NE(console.err().find("the guest reset the machine; rebooting"), std::string::npos) << console.err();

  guest_ok(console, "mount /dev/vda /mnt");
  EXPECT_EQ(guest_ok(console, "cat /mnt/data/guest.txt"), guest_text + "\n");
  EXPECT_EQ(guest_ok(console, "cat /mnt/data/host.txt"), host_text + "\n");
  guest_ok(console, "umount /mnt");
  power_off_and_expect_status_0(console);
  if (HasFatalFailure()) return;

  // The host reads the guest's file from the image, and the file system
  // the guest unmounted is consistent.
  out.clear();
  ASSERT_EQ(host_command("debugfs -R 'cat /data/guest.txt' '" + image.string() + "'", &out), 0) << out;
  EXPECT_NE(out.find(guest_text + "\n"), std::string::npos) << "debugfs read:\n" << out;
  out.clear();
  EXPECT_EQ(host_command("e2fsck -fn '" + image.string() + "'", &out), 0) << "e2fsck -fn:\n" << out;
}

// A disk on the virtio-mmio transport: Linux finds it in the DSDT (_HID
// LNRO0005), virtio_mmio drives it on its own level-triggered IOAPIC line,
// and the file system on it reads back what the host wrote.
TEST(LinuxGuest, DiskOnVirtioMmioIsFoundThroughAcpiAndReadable) {
  ScratchDir scratch;
  ASSERT_FALSE(scratch.path.empty());
  const fs::path image = scratch.path / "mmio.img";
  const std::string host_text = "on a virtio-mmio disk 5d20";
  ASSERT_EQ(make_ext4_image(image, "16M", "host.txt", host_text + "\n"), "");
  std::string out;

  GuestConsole console;
  ASSERT_TRUE(
      console.start(hostvisor_args({"--cpus", "1", "--memory", "512M", "--disk", image.string() + ",transport=mmio"})))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;

  // vda's virtio device hangs off the platform device the ACPI node made,
  // and that one is bound to virtio-mmio; the PCI devices are still there.
  EXPECT_EQ(guest_ok(console, "readlink -f /sys/block/vda/device/.."), "/sys/devices/platform/LNRO0005:00\n");
  EXPECT_TRUE(std::regex_search(guest_ok(console, "readlink /sys/block/vda/device/../driver"),
                                std::regex(R"(/bus/platform/drivers/virtio-mmio\n$)")));
  EXPECT_TRUE(
      std::regex_search(guest_ok(console, "readlink /sys/block/vda/device/driver"), std::regex(R"(/virtio_blk\n$)")));
  guest_ok(console, "test -d /sys/bus/pci/drivers/virtio-pci/0000:00:01.0");
  // Its register block and interrupt are what the DSDT said: the first
  // slot of the window, GSI 20, level-triggered (fasteoi).
  EXPECT_NE(guest_ok(console, "cat /proc/iomem").find("feb00000-feb001ff : LNRO0005:00"), std::string::npos);
  const std::string interrupts = guest_ok(console, "grep virtio /proc/interrupts");
  EXPECT_TRUE(std::regex_search(interrupts, std::regex(R"((^|\n) *20: +[1-9]\d* +IO-APIC +20-fasteoi +virtio\d+\n)")))
      << "the virtio-mmio disk must interrupt on GSI 20, level-triggered; the guest saw:\n"
      << interrupts;

  guest_ok(console, "mount -o ro /dev/vda /mnt");
  EXPECT_EQ(guest_ok(console, "cat /mnt/host.txt"), host_text + "\n");
  guest_ok(console, "umount /mnt");
  power_off_and_expect_status_0(console);
}

// --console virtio: the kernel's console and the shell are on hvc0, and
// what the terminal types goes through the virtio console's receive queue.
TEST(LinuxGuest, ShellOnVirtioConsoleRunsTypedCommands) {
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--cpus", "1", "--memory", "512M", "--console", "virtio"})))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;

  const auto result =
      console.run("echo typed-into-hvc0-$((6 * 7)); cat /sys/class/tty/console/active", kCommandTimeout);
  ASSERT_TRUE(result) << console.failure();
  EXPECT_EQ(result->status, 0) << result->output;
  EXPECT_EQ(result->output, "typed-into-hvc0-42\nhvc0\n");
  // The shell's controlling terminal is hvc0: tty_nr in /proc/PID/stat is
  // major 229 (hvc), minor 0, as (229 << 8) | 0.
  EXPECT_EQ(guest_ok(console, "cut -d' ' -f7 /proc/$$/stat"), "58624\n");
  // It is the shell's controlling terminal: Ctrl-C typed into hvc0 stops a
  // foreground command, and the next command runs well before it would end.
  ASSERT_TRUE(console.send_line("echo sleeping-now; sleep 600")) << console.failure();
  ASSERT_TRUE(console.wait_for_text("sleeping-now\r\n", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_line("\x03")) << console.failure();
  EXPECT_EQ(guest_ok(console, "echo after-ctrl-c"), "after-ctrl-c\n");
  power_off_and_expect_status_0(console);
  if (HasFatalFailure()) return;

  // The boot console hands over to hvc0 without replaying the log, so each
  // message shows once, and the banner (printed on hvc0) once too.
  const std::string& out = console.out();
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = out.find(needle); at != std::string::npos; at = out.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("Run /init as init process"), 1u) << out;
  EXPECT_EQ(count("hostvisor default guest: Linux"), 1u) << out;
  EXPECT_EQ(count("printk: console [hvc0] enabled"), 1u) << out;
}

// A network namespace with a tap in it, made by the test and removed after:
// the guest's virtio-net is the other end of the tap, so traffic never
// leaves this machine.
struct TapNamespace {
  std::string name = "hvtest" + std::to_string(::getpid());
  std::string error;
  TapNamespace() {
    std::string out;
    const std::string ns = "ip netns exec " + name + " ";
    if (host_command("ip netns add " + name, &out) != 0 || host_command(ns + "ip link set lo up", &out) != 0 ||
        host_command(ns + "ip tuntap add hvtap0 mode tap", &out) != 0 ||
        host_command(ns + "ip addr add 192.168.77.1/24 dev hvtap0", &out) != 0 ||
        host_command(ns + "ip link set hvtap0 up", &out) != 0)
      error = out;
  }
  ~TapNamespace() {
    std::string out;
    host_command("ip netns del " + name, &out);
  }
};

TEST(LinuxGuest, VirtioNetOnATapPingsBothWays) {
  TapNamespace netns;
  ASSERT_TRUE(netns.error.empty()) << "creating a network namespace with a tap (needs root and iproute2): "
                                   << netns.error;
  GuestConsole console;
  std::vector<std::string> argv = {"/usr/bin/ip", "netns", "exec", netns.name};
  for (const auto& a : hostvisor_args({"--cpus", "1", "--memory", "512M", "--net", "tap,ifname=hvtap0"}))
    argv.push_back(a);
  ASSERT_TRUE(console.start(argv)) << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;

  EXPECT_NE(guest_ok(console, "readlink /sys/class/net/eth0/device/driver").find("virtio_net"), std::string::npos);
  guest_ok(console, "ip link set eth0 up && ip addr add 192.168.77.2/24 dev eth0");
  // Guest to host, then host to guest.
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 192.168.77.1").find("2 packets received"), std::string::npos);
  std::string out;
  EXPECT_EQ(host_command("ip netns exec " + netns.name + " busybox ping -c 2 -W 5 192.168.77.2", &out), 0) << out;
  EXPECT_NE(out.find("2 packets received"), std::string::npos) << out;

  power_off_and_expect_status_0(console);
}

// A TCP port on 127.0.0.1 that nothing listens on right now.
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  int port = -1;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0)
    port = ntohs(addr.sin_port);
  if (fd >= 0) ::close(fd);
  return port;
}

// Python's http.server on 127.0.0.1:port serving `dir`, for as long as the
// object lives: the "outside" a NAT guest reaches, without leaving the machine.
struct LoopbackHttpServer {
  pid_t pid = -1;
  int port = -1;
  explicit LoopbackHttpServer(const fs::path& dir) {
    port = free_loopback_port();
    if (port < 0) return;
    pid = ::fork();
    if (pid == 0) {
      const std::string p = std::to_string(port);
      ::execlp("python3", "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir.c_str(), p.c_str(),
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Ready once it accepts a connection.
    for (int i = 0; i < 100; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(port));
      const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
      ::close(fd);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    port = -1;  // never came up
  }
  ~LoopbackHttpServer() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

std::string sha256_of(const std::string& text) {
  const size_t space = text.find_first_of(" \n");
  return text.substr(0, space);
}

// User-mode NAT (--net user) with no privileges: the guest gets a DHCP lease
// from the NAT, pings its gateway, downloads a file from a server on the
// host's loopback (reached at the gateway address) intact, and serves it
// back to the host through a hostfwd port forward.
TEST(LinuxGuest, UserNatLeasesReachesTheHostAndForwardsAPort) {
  ScratchDir scratch;
  ASSERT_FALSE(scratch.path.empty());
  fs::create_directories(scratch.path / "www");
  {
    std::mt19937_64 random(42);
    std::ofstream payload(scratch.path / "www" / "payload", std::ios::binary);
    for (int i = 0; i < (1 << 20) / 8; ++i) {
      const uint64_t word = random();
      payload.write(reinterpret_cast<const char*>(&word), sizeof word);
    }
  }
  std::string expected;
  ASSERT_EQ(host_command("sha256sum '" + (scratch.path / "www" / "payload").string() + "'", &expected), 0) << expected;
  expected = sha256_of(expected);

  LoopbackHttpServer server(scratch.path / "www");
  ASSERT_GT(server.port, 0) << "python3 -m http.server did not come up on 127.0.0.1";
  const int forward_port = free_loopback_port();
  ASSERT_GT(forward_port, 0);

  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args(
      {"--cpus", "1", "--memory", "512M", "--net", "user,hostfwd=tcp::" + std::to_string(forward_port) + "-:8080"})))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;

  guest_ok(console, "ip link set eth0 up");
  // udhcpc's script does the configuring; /bin/true leaves that to the next
  // line, so this checks only that the NAT's DHCP server answered.
  EXPECT_NE(guest_ok(console, "udhcpc -i eth0 -n -q -t 5 -s /bin/true 2>&1").find("lease of 10.0.2.15 obtained"),
            std::string::npos);
  guest_ok(console, "ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2");
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 10.0.2.2").find("2 packets received"), std::string::npos);

  const std::string url = "http://10.0.2.2:" + std::to_string(server.port) + "/payload";
  guest_ok(console, "mkdir -p /tmp/www && wget -q -O /tmp/www/payload " + url);
  EXPECT_EQ(sha256_of(guest_ok(console, "sha256sum /tmp/www/payload")), expected)
      << "the file the guest downloaded through the NAT differs from the host's";

  guest_ok(console, "httpd -p 8080 -h /tmp/www");
  std::string fetched;
  EXPECT_EQ(
      host_command("busybox wget -q -O - http://127.0.0.1:" + std::to_string(forward_port) + "/payload | sha256sum",
                   &fetched),
      0)
      << fetched;
  EXPECT_EQ(sha256_of(fetched), expected) << "the file the host fetched through hostfwd differs";

  power_off_and_expect_status_0(console);
}

}  // namespace
}  // namespace hostvisor::testing
