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
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "guest/default_guest/default_guest.h"
#include "net/switch/switch_paths.h"
#include "tests/linux/default_guest_snapshot.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

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
void power_off_and_expect_status_0(GuestConsole& console) {
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(kShutdownTimeout);
  ASSERT_TRUE(status) << "after poweroff: " << console.failure();
  EXPECT_EQ(*status, 0) << "poweroff (ACPI S5) must end hostvisor with status 0; stderr:\n" << console.err();
}

// Waits in the guest until `interface` has the address, and with
// `routed` the default route and resolv.conf, that its DHCP client
// configures at boot (the init script starts it in the background);
// returns the interface's IPv4 address with its prefix. A lease without a
// router (restrict=on's) configures the address alone.
enum class Lease { kRouted, kAddressOnly };
std::string wait_for_lease(GuestConsole& console, const std::string& interface, Lease lease = Lease::kRouted) {
  const std::string configured = lease == Lease::kRouted ? "ip route show default dev " + interface +
                                                               " | grep -q via && grep -q nameserver /etc/resolv.conf"
                                                         : "ip -4 addr show dev " + interface + " | grep -q inet";
  guest_ok(console, "for i in $(seq 300); do " + configured + " && break; sleep 0.2; done; " + configured);
  const std::string address = guest_ok(console, "ip -4 -o addr show dev " + interface + " | grep -o 'inet [0-9./]*'");
  return address.size() > 5 ? address.substr(5, address.size() - 6) : address;
}

// The default guest on one CPU (a clone of the shared snapshot of it booted
// to its shell; LinuxGuestSnapshotFixture checked that boot's banner).
TEST(LinuxGuest, OneCpuGuestSeesTheMachineAndPowersOff) {
  DefaultGuestSnapshot snapshot;
  ASSERT_TRUE(snapshot.ok()) << snapshot.error();
  GuestConsole console;
  ASSERT_TRUE(snapshot.start_clone(console)) << console.failure();

  EXPECT_EQ(guest_ok(console, "grep -c ^processor /proc/cpuinfo"), "1\n");
  guest_ok(console, "test -d /sys/bus/pci/drivers/virtio-pci");
  // The kernel found hostvisor's SMBIOS tables in the F-segment and parsed them.
  EXPECT_EQ(guest_ok(console, "cat /sys/class/dmi/id/sys_vendor /sys/class/dmi/id/product_name"),
            "hostvisor\nStandard PC (Q35)\n");

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

  // With no --net, the default guest has the NAT (what `make run` gives),
  // and is online with no command typed.
  EXPECT_TRUE(std::regex_search(devices, std::regex(R"((^|\n)0x0001 \S*/virtio_net\n)")))
      << "the default guest has no virtio-net (0x0001) without --net; the guest saw:\n"
      << devices;
  EXPECT_EQ(wait_for_lease(console, "eth0"), "10.0.2.15/24");
  EXPECT_NE(guest_ok(console, "ping -c 1 -W 5 10.0.2.2").find("1 packets received"), std::string::npos);

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
  // The loop ends once @@END@@ is in the output. It may already be behind
  // the read cursor (the guest, resumed, can print it before hostvisor's
  // resume line, which the wait above consumed), so it is not waited for.
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

// On the interpreter (--emu-tier interp): every other guest runs on the
// translator, the default, and this one keeps the reference tier tested
// end to end, with two vCPUs, a disk and a reboot.
TEST(LinuxGuest, TwoCpusDiskSurvivesRebootAndHostReadsIt) {
  ScratchDir scratch{"linux-test"};
  ASSERT_FALSE(scratch.path.empty());
  const fs::path image = scratch.path / "disk.img";
  const std::string host_text = "written by the host before boot 7f3a";
  const std::string guest_text = "written by the guest before reboot c91e";
  ASSERT_EQ(make_ext4_image(image, "64M", "data/host.txt", host_text + "\n"), "");
  std::string out;

  GuestConsole console;
  ASSERT_TRUE(console.start(
      hostvisor_args({"--emu-tier", "interp", "--cpus", "2", "--memory", "512M", "--disk", image.string()})))
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
  ScratchDir scratch{"linux-test"};
  ASSERT_FALSE(scratch.path.empty());
  const fs::path image = scratch.path / "mmio.img";
  const std::string host_text = "on a virtio-mmio disk 5d20";
  ASSERT_EQ(make_ext4_image(image, "16M", "host.txt", host_text + "\n"), "");
  std::string out;

  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args(
      {"--cpus", "1", "--memory", "512M", "--disk", image.string() + ",transport=mmio", "--net", "none"})))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;

  // --net none: the default guest has no NIC at all (it would have the NAT
  // without any --net).
  EXPECT_EQ(guest_ok(console, "ls /sys/class/net"), "lo\n");

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

// A port on 127.0.0.1 that nothing of `type` (SOCK_STREAM, SOCK_DGRAM)
// is bound to right now.
int free_loopback_port(int type = SOCK_STREAM) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
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

sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
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
      const sockaddr_in addr = loopback(port);
      const bool up = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
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

// Writes `bytes` of seeded pseudo-random data to `path`; returns its sha256.
std::string write_random_file(const fs::path& path, size_t bytes, uint64_t seed) {
  {
    std::mt19937_64 random(seed);
    std::ofstream out(path, std::ios::binary);
    for (size_t i = 0; i < bytes / 8; ++i) {
      const uint64_t word = random();
      out.write(reinterpret_cast<const char*>(&word), sizeof word);
    }
  }
  std::string sum;
  if (host_command("sha256sum '" + path.string() + "'", &sum) != 0) return "sha256sum failed: " + sum;
  return sha256_of(sum);
}

constexpr size_t k16MiB = 16u << 20;
constexpr seconds kTransferTimeout{300};  // 16 MiB to or from a guest on the software CPU

// A network namespace made by the test and removed after (with everything
// in it): the taps, bridges and veths of a test live there, so traffic
// never leaves this machine and its own interfaces are never touched.
struct NetNamespace {
  std::string name;
  std::string error;  // set when a command failed
  explicit NetNamespace(const std::string& role) : name("hv" + role + std::to_string(::getpid())) {
    run("ip netns add " + name);
    exec("ip link set lo up");
  }
  ~NetNamespace() {
    std::string out;
    host_command("ip netns del " + name, &out);
  }
  // Runs `command` on the host; records the first failure.
  void run(const std::string& command) {
    std::string out;
    if (error.empty() && host_command(command, &out) != 0) error = command + ": " + out;
  }
  // Runs `command` inside the namespace.
  void exec(const std::string& command) { run(prefix() + command); }
  std::string prefix() const { return "ip netns exec " + name + " "; }
  // argv for a program run inside the namespace.
  std::vector<std::string> argv(const std::vector<std::string>& command) const {
    std::vector<std::string> all = {"/usr/bin/ip", "netns", "exec", name};
    all.insert(all.end(), command.begin(), command.end());
    return all;
  }
  // A counter of one of its interfaces (statistics/rx_bytes, ...).
  uint64_t counter(const std::string& interface, const std::string& name_) const {
    std::string out;
    host_command(prefix() + "cat /sys/class/net/" + interface + "/statistics/" + name_, &out);
    return std::strtoull(out.c_str(), nullptr, 10);
  }
};

// A host namespace and an "outside" one joined by veth0 (host) and veth1
// (outside): both sides' neighbour entries made permanent, so neither
// sends ARP on the veth while a test counts the packets arriving at veth1.
// An entry learned earlier is otherwise re-probed about 5 s after its last
// use (Linux's delay_first_probe_time), and the other side's reply is a
// packet that did not come from the guest.
void pin_veth_neighbours(NetNamespace& host, const std::string& host_ip, NetNamespace& outside,
                         const std::string& outside_ip) {
  std::string host_mac, outside_mac;
  host_command(host.prefix() + "cat /sys/class/net/veth0/address", &host_mac);
  host_command(outside.prefix() + "cat /sys/class/net/veth1/address", &outside_mac);
  host.exec("ip neigh replace " + outside_ip + " lladdr " + outside_mac.substr(0, 17) + " dev veth0 nud permanent");
  outside.exec("ip neigh replace " + host_ip + " lladdr " + host_mac.substr(0, 17) + " dev veth1 nud permanent");
}

// A program started in the background (a server), ended with SIGTERM when
// the object goes.
struct BackgroundProcess {
  pid_t pid = -1;
  explicit BackgroundProcess(const std::vector<std::string>& argv) {
    pid = ::fork();
    if (pid == 0) {
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~BackgroundProcess() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// Whether the virtio feature `bit` is on in the guest's NIC (the kernel
// shows the negotiated features as a string of 0s and 1s, bit 0 first).
bool guest_nic_has_feature(const std::string& features, unsigned bit) {
  return bit < features.size() && features[bit] == '1';
}

// A tap in a namespace of the test's (hvtap0, 192.168.77.1/24 on the host
// side): the guest's virtio-net negotiates checksum and TCP segmentation
// offloads with it both ways, and 16 MiB cross each way intact as frames
// larger than the MTU (TSO super-packets, counted on the tap), and pings go
// both ways.
TEST(LinuxGuest, TapNegotiatesOffloadsAndCarries16MiBBothWaysAsLargeFrames) {
  ScratchDir scratch{"linux-test"};
  ASSERT_FALSE(scratch.path.empty());
  fs::create_directories(scratch.path / "www");
  const std::string expected = write_random_file(scratch.path / "www" / "payload", k16MiB, 11);
  ASSERT_EQ(expected.size(), 64u) << expected;
  NetNamespace netns("tap");
  netns.exec("ip tuntap add hvtap0 mode tap");
  netns.exec("ip addr add 192.168.77.1/24 dev hvtap0");
  netns.exec("ip link set hvtap0 up");
  ASSERT_TRUE(netns.error.empty()) << "a network namespace with a tap (needs root and iproute2): " << netns.error;
  BackgroundProcess server(netns.argv({"python3", "-m", "http.server", "--bind", "192.168.77.1", "--directory",
                                       (scratch.path / "www").string(), "8000"}));

  GuestConsole console;
  ASSERT_TRUE(
      console.start(netns.argv(hostvisor_args({"--cpus", "1", "--memory", "512M", "--net", "tap,ifname=hvtap0"}))))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;

  EXPECT_NE(guest_ok(console, "readlink /sys/class/net/eth0/device/driver").find("virtio_net"), std::string::npos);
  // Negotiated: CSUM (0), GUEST_CSUM (1), GUEST_TSO4 (7), HOST_TSO4 (11).
  const std::string features = guest_ok(console, "cat /sys/class/net/eth0/device/features");
  for (unsigned bit : {0u, 1u, 7u, 11u})
    EXPECT_TRUE(guest_nic_has_feature(features, bit)) << "virtio-net feature " << bit << " off: " << features;
  // Nothing answers DHCP on the tap: stop the client the init script
  // started, once it has made its start-up flush of the address, so it
  // cannot flush the one set here.
  guest_ok(console,
           "for i in $(seq 150); do grep -q discover /var/log/udhcpc.eth0.log && break; sleep 0.2; done; "
           "killall udhcpc");
  guest_ok(console, "ip link set eth0 up && ip addr add 192.168.77.2/24 dev eth0");
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 192.168.77.1").find("2 packets received"), std::string::npos);
  std::string out;
  EXPECT_EQ(host_command(netns.prefix() + "busybox ping -c 2 -W 5 192.168.77.2", &out), 0) << out;
  EXPECT_NE(out.find("2 packets received"), std::string::npos) << out;

  // Host to guest: the guest downloads from the host's server; the tap's
  // tx counters see the frames the host kernel handed the guest.
  const uint64_t tx_bytes = netns.counter("hvtap0", "tx_bytes"), tx_packets = netns.counter("hvtap0", "tx_packets");
  auto download = console.run(
      "mkdir -p /tmp/www && for i in $(seq 50); do wget -q -O /tmp/www/payload http://192.168.77.1:8000/payload && "
      "break; sleep 0.2; done",
      kTransferTimeout);
  ASSERT_TRUE(download) << console.failure();
  EXPECT_EQ(download->status, 0) << download->output;
  EXPECT_EQ(sha256_of(guest_ok(console, "sha256sum /tmp/www/payload")), expected)
      << "the file the guest downloaded through the tap differs from the host's";
  const uint64_t down_bytes = netns.counter("hvtap0", "tx_bytes") - tx_bytes;
  const uint64_t down_packets = netns.counter("hvtap0", "tx_packets") - tx_packets;
  EXPECT_GE(down_bytes, k16MiB);
  EXPECT_GT(down_bytes / std::max<uint64_t>(down_packets, 1), 1514u)
      << down_packets << " frames for " << down_bytes << " bytes toward the guest: no TSO super-packets";

  // Guest to host: the host fetches the file back from the guest's httpd;
  // the tap's rx counters see the guest's frames.
  guest_ok(console, "httpd -p 8080 -h /tmp/www");
  const uint64_t rx_bytes = netns.counter("hvtap0", "rx_bytes"), rx_packets = netns.counter("hvtap0", "rx_packets");
  std::string fetched;
  EXPECT_EQ(
      host_command(netns.prefix() + "busybox wget -q -O - http://192.168.77.2:8080/payload | sha256sum", &fetched), 0)
      << fetched;
  EXPECT_EQ(sha256_of(fetched), expected) << "the file the host fetched through the tap differs";
  const uint64_t up_bytes = netns.counter("hvtap0", "rx_bytes") - rx_bytes;
  const uint64_t up_packets = netns.counter("hvtap0", "rx_packets") - rx_packets;
  EXPECT_GE(up_bytes, k16MiB);
  EXPECT_GT(up_bytes / std::max<uint64_t>(up_packets, 1), 1514u)
      << up_packets << " frames for " << up_bytes << " bytes from the guest: no TSO super-packets";
  std::printf("through the tap: %llu bytes in %llu frames to the guest, %llu bytes in %llu frames from it\n",
              static_cast<unsigned long long>(down_bytes), static_cast<unsigned long long>(down_packets),
              static_cast<unsigned long long>(up_bytes), static_cast<unsigned long long>(up_packets));

  power_off_and_expect_status_0(console);
}

// --net bridge on a bridge in a namespace of the test's (br0), whose LAN
// is a veth to a second namespace: the "LAN host", 192.168.78.1, running
// dnsmasq as its DHCP server. The default guest gets its lease from the LAN
// at boot, with no command typed, and pings the LAN host. A bridge that is
// not there is refused with a one-line error that says how to make it.
TEST(LinuxGuest, BridgedGuestGetsALeaseFromTheLanAndPingsIt) {
  ScratchDir scratch{"linux-test"};
  ASSERT_FALSE(scratch.path.empty());
  NetNamespace host("br"), lan("lan");
  host.exec("ip link add br0 type bridge");
  host.exec("ip link set br0 up");
  host.exec("ip link add veth0 type veth peer name veth1 netns " + lan.name);
  host.exec("ip link set veth0 master br0");
  host.exec("ip link set veth0 up");
  lan.exec("ip addr add 192.168.78.1/24 dev veth1");
  lan.exec("ip link set veth1 up");
  ASSERT_TRUE(host.error.empty() && lan.error.empty())
      << "a bridge and a veth LAN in two network namespaces (needs root and iproute2): " << host.error << lan.error;
  const std::string leases = (scratch.path / "leases").string();
  BackgroundProcess dhcp(
      lan.argv({"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--interface=veth1",
                "--bind-interfaces", "--user=root", "--dhcp-range=192.168.78.50,192.168.78.99,255.255.255.0,1h",
                "--dhcp-option=option:router,192.168.78.1", "--dhcp-option=option:dns-server,192.168.78.1",
                "--dhcp-leasefile=" + leases, "--pid-file=" + (scratch.path / "dnsmasq.pid").string()}));

  // A missing bridge: refused before the guest starts, in one line.
  std::string refused;
  EXPECT_NE(host_command(host.prefix() + HOSTVISOR_PATH + " run --accel emu --net bridge,br=nobr", &refused), 0);
  EXPECT_NE(refused.find("there is no bridge nobr: create it with `ip link add nobr type bridge"), std::string::npos)
      << refused;

  GuestConsole console;
  ASSERT_TRUE(console.start(host.argv(hostvisor_args({"--cpus", "1", "--memory", "512M", "--net", "bridge,br=br0"}))))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;
  const std::string address = wait_for_lease(console, "eth0");
  EXPECT_TRUE(std::regex_match(address, std::regex(R"(192\.168\.78\.([5-9][0-9])/24)")))
      << "the guest's address is not from the LAN's DHCP range: " << address;
  EXPECT_NE(guest_ok(console, "ip route show default").find("default via 192.168.78.1 dev eth0"), std::string::npos);
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 192.168.78.1").find("2 packets received"), std::string::npos);
  // The LAN host sees the guest: its lease, and an answer to its ping.
  const std::string mac = guest_ok(console, "cat /sys/class/net/eth0/address");
  std::ifstream lease_file(leases);
  const std::string lease_text((std::istreambuf_iterator<char>(lease_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(lease_text.find(mac.substr(0, 17)), std::string::npos) << "dnsmasq's leases: " << lease_text;
  std::string out;
  const std::string guest_ip = address.substr(0, address.find('/'));
  EXPECT_EQ(host_command(lan.prefix() + "busybox ping -c 2 -W 5 " + guest_ip, &out), 0) << out;

  power_off_and_expect_status_0(console);
  // The tap was not persistent: gone with hostvisor, the bridge keeps the veth alone.
  std::string ports;
  host_command(host.prefix() + "ip -o link show master br0", &ports);
  EXPECT_EQ(ports.find("hvtap"), std::string::npos) << ports;
  EXPECT_NE(ports.find("veth0"), std::string::npos) << ports;
}

// --net hostonly (the privileged form, as root in a namespace of the
// test's): the network's server makes bridge hv-NAME with the host at .1 and
// serves DHCP; the guest gets a lease with no command typed, the host and
// the guest ping each other, and the guest reaches the host's own address
// on its other interface but not the "outside" namespace routed behind it
// (forwarding is on in the host namespace, off on the bridge), nor after the
// host turns ip_forward on again (which turns the bridge's on too), and the
// outside does not reach the guest. After the guest powers off, the bridge
// and its routing rules are gone.
TEST(LinuxGuest, HostOnlyReachesTheHostBothWaysAndNothingBeyond) {
  NetNamespace host("ho"), outside("out");
  for (NetNamespace* ns : {&host, &outside})  // no IPv6 chatter on the veth: its counters count the guest's packets
    ns->exec("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
  host.exec("ip link add veth0 type veth peer name veth1 netns " + outside.name);
  host.exec("ip addr add 10.99.0.1/24 dev veth0");
  host.exec("ip link set veth0 up");
  host.exec("sysctl -q -w net.ipv4.ip_forward=1");
  outside.exec("ip addr add 10.99.0.2/24 dev veth1");
  outside.exec("ip link set veth1 up");
  outside.exec("ip route add 192.168.0.0/16 via 10.99.0.1");
  ASSERT_TRUE(host.error.empty() && outside.error.empty())
      << "two network namespaces with a routed veth (needs root and iproute2): " << host.error << outside.error;
  const std::string name = "t" + std::to_string(::getpid() % 100000);
  const std::string bridge = "hv-" + name;

  GuestConsole console;
  ASSERT_TRUE(console.start(host.argv(
      hostvisor_args({"--cpus", "1", "--memory", "512M", "--net", "hostonly,name=" + name + ",net=192.168.90.0/24"}))))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;
  EXPECT_NE(console.err().find("host-only network " + name + ": the host is 192.168.90.1 on " + bridge),
            std::string::npos)
      << console.err();
  const std::string address = wait_for_lease(console, "eth0", Lease::kAddressOnly);
  EXPECT_TRUE(std::regex_match(address, std::regex(R"(192\.168\.90\.([3-9]|[1-9][0-9]+)/24)")))
      << "the guest's address is not from the host-only network's pool: " << address;
  EXPECT_EQ(guest_ok(console, "ip route | grep ^default || true"), "") << "a host-only network has no gateway";
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 192.168.90.1").find("2 packets received"), std::string::npos);
  std::string out;
  const std::string guest_ip = address.substr(0, address.find('/'));
  EXPECT_EQ(host_command(host.prefix() + "busybox ping -c 2 -W 5 " + guest_ip, &out), 0) << out;
  EXPECT_NE(out.find("2 packets received"), std::string::npos) << out;

  // Beyond the host: the guest routes the outside through the host, which
  // answers for its own address there but forwards nothing.
  EXPECT_EQ(host_command(outside.prefix() + "busybox ping -c 1 -W 5 10.99.0.1", &out), 0)
      << "the outside namespace does not reach the host: " << out;
  guest_ok(console, "ip route add 10.99.0.0/24 via 192.168.90.1");
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 10.99.0.1").find("2 packets received"), std::string::npos);
  auto beyond = console.run("ping -c 3 -W 2 10.99.0.2", kCommandTimeout);
  ASSERT_TRUE(beyond) << console.failure();
  EXPECT_NE(beyond->status, 0) << "the guest reached an address beyond the host:\n" << beyond->output;
  EXPECT_NE(beyond->output.find("0 packets received"), std::string::npos) << beyond->output;
  // The host turns forwarding on now, which turns it back on for every
  // interface, the bridge too: still nothing is routed, either way.
  host.exec("sysctl -q -w net.ipv4.ip_forward=0");
  host.exec("sysctl -q -w net.ipv4.ip_forward=1");
  out.clear();
  host_command(host.prefix() + "sysctl -n net.ipv4.conf." + bridge + ".forwarding", &out);
  EXPECT_EQ(out, "1\n") << "the host's ip_forward=1 did not reach the bridge; the check below proves less";
  // No ARP on the veth during the count.
  pin_veth_neighbours(host, "10.99.0.1", outside, "10.99.0.2");
  const uint64_t arrived = outside.counter("veth1", "rx_packets");
  beyond = console.run("ping -c 3 -W 2 10.99.0.2", kCommandTimeout);
  ASSERT_TRUE(beyond) << console.failure();
  EXPECT_NE(beyond->output.find("0 packets received"), std::string::npos)
      << "with the host forwarding, the guest reached beyond it:\n"
      << beyond->output;
  EXPECT_EQ(outside.counter("veth1", "rx_packets"), arrived) << "the guest's packets were routed beyond the host";
  EXPECT_NE(host_command(outside.prefix() + "busybox ping -c 2 -W 2 " + guest_ip, &out), 0)
      << "the outside reached the guest through the host: " << out;
  EXPECT_TRUE(host.error.empty()) << host.error;

  power_off_and_expect_status_0(console);
  // The last VM is gone: the server removes the bridge and exits.
  std::string links;
  for (int i = 0; i < 50; ++i) {
    links.clear();
    host_command(host.prefix() + "ip -o link show", &links);
    if (links.find(bridge) == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(links.find(bridge), std::string::npos) << links;
  std::string rules;
  host_command(host.prefix() + "ip rule show", &rules);
  EXPECT_EQ(rules.find(bridge), std::string::npos) << "the server left its routing rules:\n" << rules;
  // Nor its start lock and log.
  if (auto dir = net::switch_directory(); dir.ok()) {
    for (const char* suffix : {".lock", ".log"}) {
      const fs::path file = *dir + "/hostonly-" + name + suffix;
      EXPECT_FALSE(fs::exists(file)) << file;
      fs::remove(file);
    }
  }
}

// --net hostonly without CAP_NET_ADMIN (the rootless form): hostvisor runs
// as nobody (setpriv drops root and with it every capability) in a network
// namespace of the test's, on a copy of the default guest. The network's
// switch has a host gateway at .1: the guest gets a lease with no command
// typed, fetches a page from a server on the host's loopback through the
// gateway, and the host fetches a page from the guest's httpd through
// hostfwd= (to the guest's lease address). An "outside" namespace routed
// behind the host (which forwards) is reachable from the host, but not from
// the guest even when the guest routes it through the gateway: not one
// packet arrives there. One boot for all of it.
TEST(LinuxGuest, RootlessHostOnlyReachesTheHostBothWaysAndNothingBeyond) {
  NetNamespace host("rh"), outside("ro");
  host.exec("ip link add veth0 type veth peer name veth1 netns " + outside.name);
  for (NetNamespace* ns : {&host, &outside})  // no IPv6 chatter on the veth: its counters count the guest's packets
    ns->exec("sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
  host.exec("ip addr add 10.98.0.1/24 dev veth0");
  host.exec("ip link set veth0 up");
  host.exec("sysctl -q -w net.ipv4.ip_forward=1");
  outside.exec("sysctl -q -w net.ipv6.conf.veth1.disable_ipv6=1");
  outside.exec("ip addr add 10.98.0.2/24 dev veth1");
  outside.exec("ip link set veth1 up");
  outside.exec("ip route add 192.168.0.0/16 via 10.98.0.1");
  ASSERT_TRUE(host.error.empty() && outside.error.empty())
      << "two network namespaces with a routed veth (needs root and iproute2): " << host.error << outside.error;

  // What nobody may read: the guest's kernel and initramfs, and its own
  // runtime directory (the switch's socket, lock and log).
  constexpr int kNobody = 65534;
  ScratchDir scratch{"linux-test"};
  const fs::path cache = scratch.path / "cache", runtime = scratch.path / "run", www = scratch.path / "www";
  fs::create_directories(cache / "hostvisor");
  fs::create_directories(runtime);
  fs::create_directories(www);
  std::string out;
  auto guest = guest::prepare_default_guest({});
  ASSERT_TRUE(guest.ok()) << guest.error().message();
  // The cache's files only: test guests of their own live in subdirectories.
  ASSERT_EQ(host_command("find " + fs::path(guest->kernel_path).parent_path().string() +
                             " -maxdepth 1 -type f -exec cp {} " + (cache / "hostvisor").string() +
                             "/ \\; && chmod -R a+rX " + scratch.path.string(),
                         &out),
            0)
      << "copying the default guest: " << out;
  ASSERT_EQ(::chown(runtime.c_str(), kNobody, kNobody), 0);
  fs::permissions(runtime, fs::perms::owner_all, fs::perm_options::replace);
  std::ofstream(www / "hello.txt") << "the host's own service\n";
  BackgroundProcess host_service(host.argv({"busybox", "httpd", "-f", "-p", "127.0.0.1:18081", "-h", www.string()}));
  BackgroundProcess outside_service(
      outside.argv({"busybox", "httpd", "-f", "-p", "10.98.0.2:18082", "-h", www.string()}));
  std::string beyond_page;
  for (int i = 0; i < 50 && beyond_page.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    beyond_page.clear();
    if (host_command(host.prefix() + "busybox wget -q -O - http://10.98.0.2:18082/hello.txt", &beyond_page) != 0)
      beyond_page.clear();
  }
  ASSERT_EQ(beyond_page, "the host's own service\n") << "the host does not reach the outside namespace";

  const std::string name = "r" + std::to_string(::getpid() % 100000);
  GuestConsole console;
  ASSERT_TRUE(console.start(
      host.argv({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=" + scratch.path.string(),
                 "XDG_CACHE_HOME=" + cache.string(), "XDG_RUNTIME_DIR=" + runtime.string(), HOSTVISOR_PATH, "run",
                 "--accel", "emu", "--cpus", "1", "--memory", "512M", "--net",
                 "hostonly,name=" + name + ",net=192.168.94.0/24,hostfwd=tcp::18080-:80"})))
      << console.failure();
  expect_banner(console, 1);
  if (HasFatalFailure()) return;
  EXPECT_NE(
      console.err().find("host-only network " + name +
                         ": the host is 192.168.94.1 (192.168.94.0/24), VMs get addresses by DHCP (rootless form"),
      std::string::npos)
      << console.err();
  const std::string address = wait_for_lease(console, "eth0", Lease::kAddressOnly);
  EXPECT_TRUE(std::regex_match(address, std::regex(R"(192\.168\.94\.([3-9]|[1-9][0-9]+)/24)")))
      << "the guest's address is not from the host-only network's pool: " << address;
  const std::string guest_ip = address.substr(0, address.find('/'));
  // The forward went to the address the guest then leased.
  EXPECT_NE(console.err().find("hostfwd=tcp:127.0.0.1:18080-" + guest_ip + ":80"), std::string::npos) << console.err();
  EXPECT_EQ(guest_ok(console, "ip route | grep ^default || true"), "") << "a host-only network has no gateway";

  // Guest to host: the gateway is the host's loopback.
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 192.168.94.1").find("2 packets received"), std::string::npos);
  EXPECT_EQ(guest_ok(console, "wget -q -O - http://192.168.94.1:18081/hello.txt"), "the host's own service\n");
  // Host to guest, through the forward.
  guest_ok(console, "mkdir -p /tmp/www && echo the guest page > /tmp/www/index.html && httpd -p 80 -h /tmp/www");
  out.clear();
  EXPECT_EQ(host_command(host.prefix() + "busybox wget -q -O - http://127.0.0.1:18080/index.html", &out), 0) << out;
  EXPECT_EQ(out, "the guest page\n");

  // Beyond the host: the guest routes the outside through the gateway.
  // No ARP on the veth during the count.
  pin_veth_neighbours(host, "10.98.0.1", outside, "10.98.0.2");
  const uint64_t arrived = outside.counter("veth1", "rx_packets");
  guest_ok(console, "ip route add 10.98.0.0/24 via 192.168.94.1");
  auto fetch = console.run("wget -q -T 5 -O - http://10.98.0.2:18082/hello.txt", kCommandTimeout);
  ASSERT_TRUE(fetch) << console.failure();
  EXPECT_NE(fetch->status, 0) << "the guest reached a server beyond the host:\n" << fetch->output;
  auto ping = console.run("ping -c 2 -W 2 10.98.0.2", kCommandTimeout);
  ASSERT_TRUE(ping) << console.failure();
  EXPECT_NE(ping->output.find("0 packets received"), std::string::npos) << ping->output;
  EXPECT_EQ(outside.counter("veth1", "rx_packets"), arrived) << "packets from the guest arrived beyond the host";

  power_off_and_expect_status_0(console);
  // The last VM is gone: the switch (and its forward) goes too.
  const fs::path socket = runtime / "hostvisor" / "net" / ("hostonly-" + name + ".sock");
  for (int i = 0; i < 50 && fs::exists(socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(fs::exists(socket));
  for (const char* suffix : {".lock", ".log"})
    EXPECT_FALSE(fs::exists(runtime / "hostvisor" / "net" / ("hostonly-" + name + suffix))) << suffix;
  out.clear();
  EXPECT_NE(host_command(host.prefix() + "busybox wget -q -T 2 -O - http://127.0.0.1:18080/index.html", &out), 0)
      << "the forward outlived its VM: " << out;
}

// One TCP connection to 127.0.0.1:port: sends `message`, ends its side,
// returns all it reads back until the peer closes ("" on any failure).
std::string tcp_round_trip(int port, const std::string& message) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  const timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const sockaddr_in addr = loopback(port);
  std::string reply;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::write(fd, message.data(), message.size()) == static_cast<ssize_t>(message.size()) &&
      ::shutdown(fd, SHUT_WR) == 0) {
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return reply;
}

// Sends `message` to 127.0.0.1:port over UDP and returns the first reply
// within 3 s, trying three times ("" if none came).
std::string udp_round_trip(int port, const std::string& message) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  const timeval timeout{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const sockaddr_in addr = loopback(port);
  std::string reply;
  for (int attempt = 0; attempt < 3 && reply.empty(); ++attempt) {
    ::sendto(fd, message.data(), message.size(), 0, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    char buf[2048];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) reply.assign(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return reply;
}

std::vector<std::string> nat_args(const std::vector<std::string>& nets) {
  std::vector<std::string> extra = {"--cpus", "1", "--memory", "512M"};
  for (const auto& net : nets) {
    extra.push_back("--net");
    extra.push_back(net);
  }
  return hostvisor_args(extra);
}

// User-mode NAT (--net user) with no privileges, on the default guest as it
// booted (a clone of the shared snapshot of it, the forwards given at the
// restore) — no ip commands typed: its DHCP client got a lease from the NAT
// and configured the address, the route and resolv.conf; it pings its
// gateway; it downloads 16 MiB from a server on the host's loopback
// (reached at the gateway address) intact and serves them back to the host
// through a TCP forward; a UDP forward echoes; and 1,000 short TCP
// connections through a forward all come back.
TEST(LinuxGuest, UserNatDefaultGuestIsOnlineAtBootAndForwardsTcpAndUdp) {
  ScratchDir scratch{"linux-test"};
  ASSERT_FALSE(scratch.path.empty());
  fs::create_directories(scratch.path / "www");
  const std::string expected = write_random_file(scratch.path / "www" / "payload", k16MiB, 42);
  ASSERT_EQ(expected.size(), 64u) << expected;
  fs::copy_file(GUEST_ECHO_SERVER_PATH, scratch.path / "www" / "echo");

  LoopbackHttpServer server(scratch.path / "www");
  ASSERT_GT(server.port, 0) << "python3 -m http.server did not come up on 127.0.0.1";
  const int http_forward = free_loopback_port();
  const int echo_forward = free_loopback_port();
  const int udp_forward = free_loopback_port(SOCK_DGRAM);
  ASSERT_GT(http_forward, 0);
  ASSERT_GT(echo_forward, 0);
  ASSERT_GT(udp_forward, 0);
  ASSERT_NE(http_forward, echo_forward);

  // A clone of the shared snapshot, with this test's forwards on its NAT.
  DefaultGuestSnapshot snapshot;
  ASSERT_TRUE(snapshot.ok()) << snapshot.error();
  GuestConsole console;
  ASSERT_TRUE(snapshot.start_clone(console, {"--net", "user,hostfwd=tcp::" + std::to_string(http_forward) +
                                                          "-:8080,hostfwd=tcp::" + std::to_string(echo_forward) +
                                                          "-:7,hostfwd=udp::" + std::to_string(udp_forward) + "-:7"}))
      << console.failure();

  // The clone's own MAC is the one its guest sends from: hostvisor gave the
  // NIC a new one, and the guest agent moves eth0 from the snapshot's to it
  // (the traffic below all comes after that).
  std::smatch macs;
  const std::regex clone_macs(R"(NIC 0: MAC ([0-9a-f:]{17}), the clone's own \(the snapshot's was ([0-9a-f:]{17})\))");
  for (const auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
       !std::regex_search(console.err(), macs, clone_macs) && std::chrono::steady_clock::now() < deadline;)
    console.read_for(std::chrono::milliseconds(200));
  ASSERT_FALSE(macs.empty()) << "hostvisor named no new MAC for the clone's NIC; stderr:\n" << console.err();
  const std::string clone_mac = macs[1], snapshot_mac = macs[2];
  EXPECT_NE(clone_mac, snapshot_mac);
  EXPECT_EQ(
      guest_ok(console, "for i in $(seq 100); do grep -q " + clone_mac +
                            " /sys/class/net/eth0/address && break; sleep 0.2; done; cat /sys/class/net/eth0/address"),
      clone_mac + "\n")
      << "the guest's eth0 does not send from the clone's MAC";

  EXPECT_EQ(wait_for_lease(console, "eth0"), "10.0.2.15/24");
  EXPECT_NE(guest_ok(console, "cat /var/log/udhcpc.eth0.log").find("lease of 10.0.2.15 obtained"), std::string::npos);
  EXPECT_NE(guest_ok(console, "ip route show default").find("default via 10.0.2.2 dev eth0"), std::string::npos);
  EXPECT_EQ(guest_ok(console, "cat /etc/resolv.conf"), "nameserver 10.0.2.3\n");
  EXPECT_NE(guest_ok(console, "ping -c 2 -W 5 10.0.2.2").find("2 packets received"), std::string::npos);

  // Guest to host: 16 MiB from the host's loopback, through the NAT.
  const std::string base = "http://10.0.2.2:" + std::to_string(server.port);
  auto download =
      console.run("mkdir -p /tmp/www && wget -q -O /tmp/www/payload " + base + "/payload", kTransferTimeout);
  ASSERT_TRUE(download) << console.failure();
  EXPECT_EQ(download->status, 0) << download->output;
  EXPECT_EQ(sha256_of(guest_ok(console, "sha256sum /tmp/www/payload")), expected)
      << "the file the guest downloaded through the NAT differs from the host's";

  // Host to guest: the same 16 MiB from the guest's httpd through hostfwd.
  guest_ok(console, "httpd -p 8080 -h /tmp/www");
  std::string fetched;
  EXPECT_EQ(
      host_command("busybox wget -q -O - http://127.0.0.1:" + std::to_string(http_forward) + "/payload | sha256sum",
                   &fetched),
      0)
      << fetched;
  EXPECT_EQ(sha256_of(fetched), expected) << "the file the host fetched through hostfwd differs";

  // The echo server (busybox nc has no UDP), fetched through the NAT too.
  guest_ok(console,
           "wget -q -O /tmp/echo " + base + "/echo && chmod +x /tmp/echo && /tmp/echo 7 7 </dev/null >/dev/null 2>&1");
  for (int i = 0; i < 20; ++i) {
    const std::string datagram = "datagram " + std::to_string(i) + " through the UDP forward";
    EXPECT_EQ(udp_round_trip(udp_forward, datagram), datagram) << "datagram " << i;
  }

  constexpr int kConnections = 1000;
  int lost = 0;
  std::string first_loss;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kConnections; ++i) {
    const std::string message = "connection " + std::to_string(i) + "\n";
    const std::string reply = tcp_round_trip(echo_forward, message);
    if (reply != message) {
      if (lost++ == 0) first_loss = "connection " + std::to_string(i) + " got back \"" + reply + "\"";
    }
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(lost, 0) << lost << " of " << kConnections
                     << " connections through the forward lost; first: " << first_loss;
  std::printf("%d TCP connections through hostfwd in %.1f s\n", kConnections, elapsed);

  power_off_and_expect_status_0(console);
}

// The MACs of a VM's NICs, read in its guest: "eth0 MAC\neth1 MAC\n".
std::string guest_macs(GuestConsole& console) {
  return guest_ok(console, "for n in /sys/class/net/eth*; do echo \"${n##*/} $(cat $n/address)\"; done");
}

// restrict=on: the guest reaches nothing but the forwards — not the host's
// loopback server, which an unrestricted guest reaches (above) — while a
// forward still serves. On two NICs (a second network for the second),
// which get two different MACs, and the same two when the VM runs again.
TEST(LinuxGuest, UserNatRestrictedBlocksTheHostButForwardsAndMacsAreStable) {
  ScratchDir scratch{"linux-test"};
  ASSERT_FALSE(scratch.path.empty());
  fs::create_directories(scratch.path / "www");
  std::ofstream(scratch.path / "www" / "small") << "from the host\n";
  LoopbackHttpServer server(scratch.path / "www");
  ASSERT_GT(server.port, 0) << "python3 -m http.server did not come up on 127.0.0.1";
  const int forward = free_loopback_port();
  ASSERT_GT(forward, 0);
  const std::vector<std::string> nets = {"user,restrict=on,hostfwd=tcp::" + std::to_string(forward) + "-:8080",
                                         "user,restrict=on,net=10.0.3.0/24"};
  std::string first_macs;
  {
    GuestConsole console;
    ASSERT_TRUE(console.start(nat_args(nets))) << console.failure();
    expect_banner(console, 1);
    if (HasFatalFailure()) return;
    // DHCP is the NAT's own, so a restricted guest still gets its leases,
    // but with no router or DNS server in them: there is nowhere to go.
    EXPECT_EQ(wait_for_lease(console, "eth0", Lease::kAddressOnly), "10.0.2.15/24");
    EXPECT_EQ(wait_for_lease(console, "eth1", Lease::kAddressOnly), "10.0.3.15/24");
    EXPECT_EQ(guest_ok(console, "ip route | grep ^default || echo no default route"), "no default route\n");

    first_macs = guest_macs(console);
    const std::regex two_macs(R"(eth0 ([0-9a-f:]{17})\neth1 ([0-9a-f:]{17})\n)");
    std::smatch macs;
    ASSERT_TRUE(std::regex_match(first_macs, macs, two_macs)) << first_macs;
    EXPECT_NE(macs[1].str(), macs[2].str()) << "two NICs of one VM share a MAC";
    for (int i = 1; i <= 2; ++i) {
      const int first_byte = std::stoi(macs[i].str().substr(0, 2), nullptr, 16);
      EXPECT_EQ(first_byte & 3, 2) << "a generated MAC is unicast and locally administered: " << macs[i];
    }

    const auto blocked = console.run(
        "timeout 10 wget -q -O - http://10.0.2.2:" + std::to_string(server.port) + "/small; echo \"wget status $?\"",
        kCommandTimeout);
    ASSERT_TRUE(blocked) << console.failure();
    EXPECT_EQ(blocked->output.find("from the host"), std::string::npos) << blocked->output;
    EXPECT_EQ(blocked->output.find("wget status 0"), std::string::npos)
        << "restrict=on let the guest reach the host's loopback: " << blocked->output;

    guest_ok(console,
             "mkdir -p /tmp/www && echo 'from the restricted guest' > /tmp/www/index.html && "
             "httpd -p 8080 -h /tmp/www");
    std::string fetched;
    EXPECT_EQ(host_command("busybox wget -q -O - http://127.0.0.1:" + std::to_string(forward) + "/", &fetched), 0)
        << fetched;
    EXPECT_EQ(fetched, "from the restricted guest\n") << "the forward must still serve under restrict=on";
    power_off_and_expect_status_0(console);
    if (HasFatalFailure()) return;
  }
  // The same VM again, in a new hostvisor: the same MACs.
  GuestConsole again;
  ASSERT_TRUE(again.start(nat_args(nets))) << again.failure();
  expect_banner(again, 1);
  if (HasFatalFailure()) return;
  EXPECT_EQ(guest_macs(again), first_macs) << "the NICs' MACs changed across runs of the same VM";
  power_off_and_expect_status_0(again);
}

// rate= on a real guest: a 3 MiB download through the NAT at 512 KiB/s
// takes 6 s, within 10% (the burst is 64 KiB, about 2% of the file; the
// software CPU alone moves the file in well under a second, so the time is
// the limit's).
TEST(LinuxGuest, UserNatRateLimitHoldsATransferWithinTenPercent) {
  constexpr size_t kBytes = 3u << 20;
  constexpr double kRate = 512 * 1024;
  ScratchDir scratch{"linux-test"};
  ASSERT_FALSE(scratch.path.empty());
  fs::create_directories(scratch.path / "www");
  const std::string expected = write_random_file(scratch.path / "www" / "payload", kBytes, 7);
  LoopbackHttpServer server(scratch.path / "www");
  ASSERT_GT(server.port, 0) << "python3 -m http.server did not come up on 127.0.0.1";

  // A clone of the shared snapshot, its NAT limited from the restore on.
  DefaultGuestSnapshot snapshot;
  ASSERT_TRUE(snapshot.ok()) << snapshot.error();
  GuestConsole console;
  ASSERT_TRUE(snapshot.start_clone(console, {"--net", "user,rate=512K"})) << console.failure();
  wait_for_lease(console, "eth0");

  const auto start = std::chrono::steady_clock::now();
  auto download = console.run("wget -q -O /tmp/payload http://10.0.2.2:" + std::to_string(server.port) + "/payload",
                              kTransferTimeout);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(download) << console.failure();
  EXPECT_EQ(download->status, 0) << download->output;
  EXPECT_EQ(sha256_of(guest_ok(console, "sha256sum /tmp/payload")), expected);
  const double rate = kBytes / seconds;
  std::printf("rate=512K: %zu bytes in %.2f s, %.0f bytes/s (%.1f%% of the limit)\n", kBytes, seconds, rate,
              100 * rate / kRate);
  EXPECT_GT(rate, 0.9 * kRate) << "the transfer ran well below the limit";
  EXPECT_LT(rate, 1.1 * kRate) << "the transfer ran above the limit";

  power_off_and_expect_status_0(console);
}

}  // namespace
}  // namespace hostvisor::testing
