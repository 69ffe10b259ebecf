// --net internal on real guests: the default guest on the software CPU (and
// one under QEMU TCG) on a VM-to-VM segment with no host. One scenario,
// several checks per boot, at most three guests at once:
//   - two VMs on network N with dhcp= get leases from the switch's DHCP
//     server, ping each other and copy 16 MiB each way intact;
//   - a VM on another network reaches neither;
//   - a QEMU guest on `-netdev stream` joins N's socket and pings a
//     hostvisor guest both ways;
//   - SIGKILL of one VM leaves the switch serving the others;
//   - the switch ends when the last VM leaves.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <thread>

#include "net/switch/switch_paths.h"
#include "tests/linux/guest_console.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{300};  // three guests share two cores
constexpr seconds kCommandTimeout{60};
constexpr seconds kTransferTimeout{240};
constexpr seconds kShutdownTimeout{90};
const std::regex kBanner(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\. Type 'poweroff' to stop\.)");
const std::string kDhcp = "10.77.0.0/24";

std::vector<std::string> hostvisor_on(const std::string& net) {
  return {HOSTVISOR_PATH, "run", "--accel", "emu", "--cpus", "1", "--memory", "512M", "--net", net};
}

// The IPv4 address DHCP gave eth0, waiting for it (udhcpc runs at boot).
std::string wait_for_address(GuestConsole& console) {
  const std::string has = "ip -4 addr show dev eth0 | grep -q inet";
  guest_ok(console, "for i in $(seq 300); do " + has + " && break; sleep 0.2; done; " + has);
  const std::string out = guest_ok(console, "ip -4 -o addr show dev eth0 | grep -o 'inet [0-9.]*'");
  return out.size() > 5 ? out.substr(5, out.size() - 6) : out;
}

int received(GuestConsole& console, const std::string& from_to) {
  auto result = console.run("ping -c 3 -W 3 " + from_to + " 2>&1", kCommandTimeout);
  if (!result) return -1;
  std::smatch m;
  if (!std::regex_search(result->output, m, std::regex(R"((\d+) packets received)"))) return -1;
  return std::stoi(m[1].str());
}

void boot(GuestConsole& console, const std::string& who) {
  auto banner = console.wait_for_regex(kBanner, kBootTimeout);
  ASSERT_TRUE(banner) << who << ": " << console.failure();
}

void power_off(GuestConsole& console) {
  if (!console.send_line("poweroff")) return;
  const auto status = console.wait_exit(kShutdownTimeout);
  EXPECT_TRUE(status) << console.failure();
}

std::string sha256_of(const std::string& output) { return output.substr(0, output.find(' ')); }

TEST(LinuxInternalNetwork, TwoVmsShareASegmentAnotherIsApartQemuJoinsAndAKillLeavesTheRest) {
  const std::string net = "hvtest-" + std::to_string(::getpid());
  const std::string other = net + "-apart";
  auto paths = net::switch_paths(net);
  ASSERT_TRUE(paths.ok()) << paths.error().message();
  const char* cache_home = std::getenv("XDG_CACHE_HOME");
  const fs::path cache = fs::path(cache_home ? cache_home : std::string(std::getenv("HOME")) + "/.cache") / "hostvisor";

  GuestConsole a, b, c;
  ASSERT_TRUE(a.start(hostvisor_on("internal,name=" + net + ",dhcp=" + kDhcp + ",mac=02:77:00:00:00:0a")))
      << a.failure();
  // The first VM started the switch (detached): its socket is there.
  for (int i = 0; i < 100 && !fs::exists(paths->socket); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(paths->socket)) << "no switch socket at " << paths->socket << "; A's stderr: " << a.err();
  ASSERT_TRUE(b.start(hostvisor_on("internal,name=" + net + ",mac=02:77:00:00:00:0b"))) << b.failure();
  ASSERT_TRUE(c.start(hostvisor_on("internal,name=" + other + ",mac=02:77:00:00:00:0c"))) << c.failure();
  boot(a, "A");
  boot(b, "B");
  boot(c, "C");
  if (HasFatalFailure()) return;

  // Leases from the switch's DHCP server: two addresses of 10.77.0.0/24.
  const std::string address_a = wait_for_address(a), address_b = wait_for_address(b);
  const std::regex in_network(R"(10\.77\.0\.\d+)");
  ASSERT_TRUE(std::regex_match(address_a, in_network)) << address_a;
  ASSERT_TRUE(std::regex_match(address_b, in_network)) << address_b;
  EXPECT_NE(address_a, address_b);
  EXPECT_EQ(guest_ok(a, "ip route | grep ^default || echo none"), "none\n") << "an internal network has no gateway";
  EXPECT_EQ(received(a, address_b), 3) << "A cannot ping B";
  EXPECT_EQ(received(b, address_a), 3) << "B cannot ping A";

  // C, on another network with an address of the same subnet, reaches neither.
  const std::string address_c = "10.77.0.200";
  ASSERT_NE(address_a, address_c);
  ASSERT_NE(address_b, address_c);
  guest_ok(c, "ip addr add " + address_c + "/24 dev eth0 && ip link set eth0 up");
  EXPECT_EQ(received(c, address_a), 0) << "a VM on another network reached A";
  EXPECT_EQ(received(c, address_b), 0) << "a VM on another network reached B";
  EXPECT_EQ(received(a, address_c), 0) << "A reached a VM on another network";
  power_off(c);

  // 16 MiB each way, served by busybox httpd, fetched with wget, compared by hash.
  for (auto [server, client, address] : {std::tuple{&b, &a, address_b}, std::tuple{&a, &b, address_a}}) {
    const std::string made = guest_ok(*server,
                                      "mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/payload bs=1M count=16 "
                                      "2>/dev/null && httpd -p 8080 -h /tmp/www && sha256sum /tmp/www/payload",
                                      kTransferTimeout);
    const std::string got = guest_ok(*client,
                                     "wget -q -O /tmp/payload http://" + address +
                                         ":8080/payload && sha256sum /tmp/payload && "
                                         "stat -c %s /tmp/payload && rm /tmp/payload",
                                     kTransferTimeout);
    EXPECT_EQ(sha256_of(got), sha256_of(made)) << "16 MiB from " << address << " arrived changed";
    EXPECT_NE(got.find("\n16777216\n"), std::string::npos) << got;
  }

  // A QEMU TCG guest (the same kernel and initramfs) on N's socket.
  GuestConsole q;
  ASSERT_TRUE(
      q.start({"/usr/bin/qemu-system-x86_64", "-accel", "tcg", "-smp", "1", "-m", "512M", "-nographic", "-no-reboot",
               "-kernel", (cache / "vmlinuz").string(), "-initrd", (cache / "initrd.img").string(), "-append",
               "console=ttyS0 panic=-1", "-netdev", "stream,id=n,server=off,addr.type=unix,addr.path=" + paths->socket,
               "-device", "virtio-net-pci,netdev=n,mac=02:77:00:00:00:51"}))
      << q.failure();
  boot(q, "QEMU");
  if (HasFatalFailure()) return;
  const std::string address_q = wait_for_address(q);
  ASSERT_TRUE(std::regex_match(address_q, in_network)) << "the QEMU guest got no lease: " << address_q;
  EXPECT_EQ(received(q, address_a), 3) << "the QEMU guest cannot ping A";
  EXPECT_EQ(received(a, address_q), 3) << "A cannot ping the QEMU guest";

  // B dies without a word; the switch goes on serving A and the QEMU guest.
  ASSERT_TRUE(b.send_signal(SIGKILL));
  b.wait_exit(kShutdownTimeout);
  EXPECT_EQ(received(a, address_q), 3) << "after B was killed, A cannot ping the QEMU guest";
  EXPECT_EQ(received(q, address_a), 3) << "after B was killed, the QEMU guest cannot ping A";
  EXPECT_EQ(received(a, address_b), 0) << "B was killed but answers";
  EXPECT_TRUE(fs::exists(paths->socket));

  power_off(a);
  power_off(q);
  // With its last port gone, the switch ends and removes its socket.
  for (int i = 0; i < 100 && fs::exists(paths->socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(fs::exists(paths->socket)) << "the switch outlived its last port";
  // It leaves nothing behind: its lock file and log go with it.
  EXPECT_FALSE(fs::exists(fs::path(paths->directory) / (net + ".lock")));
  EXPECT_FALSE(fs::exists(fs::path(paths->directory) / (net + ".log")));
  for (const std::string& name : {net, other}) {  // in case it did not
    std::error_code ignored;
    fs::remove(fs::path(paths->directory) / (name + ".lock"), ignored);
    fs::remove(fs::path(paths->directory) / (name + ".log"), ignored);
  }
}

}  // namespace
}  // namespace hostvisor::testing
