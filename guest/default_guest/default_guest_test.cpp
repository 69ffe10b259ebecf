// Builds the real default guest from Debian's packages (apt-get download)
// into a temporary cache, as `hostvisor run` does on first use.
#include "guest/default_guest/default_guest.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "base/process.h"

namespace hostvisor::guest {
namespace {

TEST(DefaultGuest, BuildsFromDebianPackagesAndIsReusedAfterwards) {
  auto cache = std::filesystem::temp_directory_path() / ("hv-default-guest-" + std::to_string(::getpid()));
  DefaultGuestOptions options;
  options.cache_dir = cache.string();
  // Any file will do as the agent: the builder only ships it.
  const auto agent = cache.string() + "-agent";
  { std::ofstream(agent) << "#!/bin/sh\n"; }
  options.agent_path = agent;
  std::vector<std::string> progress;
  options.progress = [&](const std::string& line) { progress.push_back(line); };
  auto guest = prepare_default_guest(options);
  ASSERT_TRUE(guest.ok()) << guest.error().message();
  EXPECT_FALSE(progress.empty());
  EXPECT_NE(guest->kernel_release.find("cloud-amd64"), std::string::npos) << guest->kernel_release;
  EXPECT_NE(guest->cmdline.find("console=ttyS0"), std::string::npos);

  // The kernel is a bzImage ("HdrS" at 0x202).
  auto kernel =
      run_process_checked({"sh", "-c", "dd if='" + guest->kernel_path + "' bs=1 skip=514 count=4 2>/dev/null"});
  ASSERT_TRUE(kernel.ok());
  EXPECT_EQ(*kernel, "HdrS");

  // The initramfs holds init, busybox and the virtio modules, dependencies first.
  auto listing = run_process_checked({"sh", "-c", "cpio -it --quiet < '" + guest->initrd_path + "'"});
  ASSERT_TRUE(listing.ok()) << listing.error().message();
  for (const char* f :
       {"init", "etc/inittab", "sbin/hostvisor-agent", "etc/udhcpc/hostvisor.script", "bin/busybox", "dev/console",
        "lib/modules/virtio_pci.ko", "lib/modules/virtio_mmio.ko", "lib/modules/virtio_blk.ko",
        "lib/modules/virtio_net.ko", "lib/modules/virtio_console.ko", "lib/modules/virtio-rng.ko",
        "lib/modules/virtio_balloon.ko", "lib/modules/virtio.ko", "lib/modules/virtio_ring.ko", "lib/modules/failover.ko", "lib/modules/vsock.ko",
        "lib/modules/vmw_vsock_virtio_transport_common.ko", "lib/modules/vmw_vsock_virtio_transport.ko",
        "lib/modules/fuse.ko", "lib/modules/virtiofs.ko", "sbin/mkfs.ext4", "etc/mke2fs.conf",
        "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libext2fs.so.2",
        "lib/x86_64-linux-gnu/libe2p.so.2", "lib/x86_64-linux-gnu/libcom_err.so.2",
        "lib/x86_64-linux-gnu/libblkid.so.1", "lib/x86_64-linux-gnu/libuuid.so.1"})
    EXPECT_NE(listing->find(std::string(f) + "\n"), std::string::npos) << f << " missing from\n" << *listing;
  auto order = run_process_checked(
      {"sh", "-c", "cd '" + cache.string() + "' && cpio -i --quiet --to-stdout etc/hostvisor-modules < initrd.img"});
  ASSERT_TRUE(order.ok());
  EXPECT_LT(order->find("virtio.ko\n"), order->find("virtio_pci.ko\n")) << *order;
  EXPECT_LT(order->find("virtio_ring.ko\n"), order->find("virtio_blk.ko\n")) << *order;
  EXPECT_LT(order->find("net_failover.ko\n"), order->find("virtio_net.ko\n")) << *order;
  EXPECT_LT(order->find("vsock.ko\n"), order->find("vmw_vsock_virtio_transport_common.ko\n")) << *order;
  EXPECT_LT(order->find("fuse.ko\n"), order->find("virtiofs.ko\n")) << *order;
  EXPECT_LT(order->find("vmw_vsock_virtio_transport_common.ko\n"), order->find("vmw_vsock_virtio_transport.ko\n"))
      << *order;

  // A second call reuses the cache without downloading.
  const auto stamp = std::filesystem::last_write_time(guest->initrd_path);
  progress.clear();
  auto again = prepare_default_guest(options);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(progress.empty());
  EXPECT_EQ(std::filesystem::last_write_time(again->initrd_path), stamp);
  std::filesystem::remove_all(cache);
  std::filesystem::remove(agent);
}

TEST(DefaultGuest, InitLoadsModulesThenHandsOverToBusyboxInit) {
  const std::string init = default_guest_init_script();
  EXPECT_EQ(init.rfind("#!/bin/sh", 0), 0u);
  EXPECT_NE(init.find("/etc/hostvisor-modules"), std::string::npos);
  EXPECT_NE(init.find("exec /bin/busybox init"), std::string::npos);
  EXPECT_NE(default_guest_inittab().find("respawn:-/bin/cttyhack /bin/sh"), std::string::npos);
  // The console is reopened after the modules, so hvc0 (virtio_console) is
  // there when busybox init and its shell take it over.
  EXPECT_LT(init.find("/etc/hostvisor-modules"), init.find("exec <>/dev/console"));
  EXPECT_LT(init.find("exec <>/dev/console"), init.find("exec /bin/busybox init"));
}

TEST(DefaultGuest, InitMountsEachShareOfTheCommandLineAfterTheModules) {
  const std::string init = default_guest_init_script();
  const size_t shares = init.find("hostvisor.shares=*)");
  ASSERT_NE(shares, std::string::npos);
  EXPECT_NE(init.find("mount -t virtiofs \"$tag\" \"$target\""), std::string::npos);
  EXPECT_NE(init.find("target=/mnt/$tag"), std::string::npos);  // without a path
  EXPECT_NE(init.find("set -f"), std::string::npos);            // a path is never globbed
  // virtiofs is loaded by then, and the shares are there before the shell.
  EXPECT_GT(shares, init.find("/etc/hostvisor-modules"));
  EXPECT_LT(shares, init.find("exec /bin/busybox init"));
}

TEST(DefaultGuest, InitFormatsOnlyABlankDataDiskFoundByItsSerial) {
  const std::string init = default_guest_init_script();
  const size_t serial = init.find("= hostvisor-data ]");
  ASSERT_NE(serial, std::string::npos) << init;
  const size_t blank = init.find("cmp -s -n 131072 \"$disk\" /dev/zero", serial);
  const size_t mkfs = init.find("mkfs.ext4 ", serial);
  const size_t mount = init.find("mount -t ext4 \"$disk\" /data", serial);
  ASSERT_NE(blank, std::string::npos);
  ASSERT_NE(mkfs, std::string::npos);
  ASSERT_NE(mount, std::string::npos);
  EXPECT_LT(blank, mkfs);
  EXPECT_LT(mkfs, mount);
  EXPECT_GT(serial, init.find("mkdir -p /var/log"));  // mkfs logs there
}

TEST(DefaultGuest, InitMountsPtysAndStartsTheAgentInTheBackground) {
  const std::string init = default_guest_init_script();
  const size_t agent = init.find("/sbin/hostvisor-agent </dev/null >/var/log/hostvisor-agent.log 2>&1 &");
  ASSERT_NE(agent, std::string::npos) << init;
  // After the modules (vsock) and /var/log, before busybox init.
  EXPECT_GT(agent, init.find("/etc/hostvisor-modules"));
  EXPECT_GT(agent, init.find("mkdir -p /var/log"));
  EXPECT_LT(agent, init.find("exec /bin/busybox init"));
  EXPECT_NE(init.find("mount -t devpts"), std::string::npos);  // exec -t needs ptys
}

TEST(DefaultGuest, ContentHashTellsContentsApart) {
  EXPECT_EQ(content_hash("agent v1"), content_hash("agent v1"));
  EXPECT_NE(content_hash("agent v1"), content_hash("agent v2"));
  EXPECT_EQ(content_hash("").size(), 16u);
}

TEST(DefaultGuest, InitStartsADhcpClientPerNicInTheBackgroundBeforeTheBanner) {
  const std::string init = default_guest_init_script();
  const size_t udhcpc = init.find("udhcpc -f -i \"$interface\" -s /etc/udhcpc/hostvisor.script");
  ASSERT_NE(udhcpc, std::string::npos) << init;
  // Backgrounded, its output off the console, and started before the banner
  // so that banner-to-prompt stays what it was.
  const size_t end_of_command = init.find(" &\n", udhcpc);
  ASSERT_NE(end_of_command, std::string::npos);
  EXPECT_NE(init.substr(udhcpc, end_of_command - udhcpc).find(">\"/var/log/udhcpc.$interface.log\" 2>&1"),
            std::string::npos)
      << init;
  EXPECT_LT(udhcpc, init.find("echo \"hostvisor default guest:"));
  EXPECT_NE(init.find("for net_device in /sys/class/net/*"), std::string::npos);
  EXPECT_NE(init.find("ip link set lo up"), std::string::npos);
  // The link coming up is logged after the prompt: only warnings and worse
  // reach the console by then, so the shell's output stays the shell's.
  EXPECT_LT(init.find("dmesg -n 5"), udhcpc);
  EXPECT_GT(init.find("dmesg -n 5"), init.find("/etc/hostvisor-modules"));
}

// Runs the DHCP script on the host as udhcpc would, with a stand-in `ip`
// that records its arguments, and /etc/resolv.conf moved into a scratch
// directory.
class DhcpScript : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("hv-dhcp-script-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / "bin");
    write(dir_ / "bin" / "ip", "#!/bin/sh\necho \"ip $*\" >> \"" + (dir_ / "ip.log").string() + "\"\n", 0755);
    std::string script = default_guest_dhcp_script();
    for (size_t at; (at = script.find("/etc/resolv.conf")) != std::string::npos;)
      script.replace(at, sizeof("/etc/resolv.conf") - 1, (dir_ / "resolv.conf").string());
    write(dir_ / "script", script, 0755);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static void write(const std::filesystem::path& path, const std::string& text, int mode) {
    std::ofstream(path) << text;
    std::filesystem::permissions(path, static_cast<std::filesystem::perms>(mode));
  }
  // Runs the script for `event` with the lease in `environment` ("k=v ...").
  std::string run(const std::string& event, const std::string& environment) {
    auto r = run_process_checked({"sh", "-c",
                                  "PATH='" + (dir_ / "bin").string() + "':$PATH " + environment + " '" +
                                      (dir_ / "script").string() + "' " + event + " && cat '" +
                                      (dir_ / "ip.log").string() + "'"});
    EXPECT_TRUE(r.ok()) << r.error().message();
    return r.ok() ? *r : "";
  }
  std::string resolv_conf() {
    std::ifstream in(dir_ / "resolv.conf");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::filesystem::path dir_;
};

TEST_F(DhcpScript, BoundSetsTheAddressTheDefaultRouteAndResolvConf) {
  const std::string ip_calls =
      run("bound", "interface=hvnone0 ip=10.0.2.15 mask=24 router=10.0.2.2 dns=10.0.2.3 domain=example.internal");
  EXPECT_NE(ip_calls.find("ip -4 addr flush dev hvnone0\n"), std::string::npos) << ip_calls;
  EXPECT_NE(ip_calls.find("ip addr add 10.0.2.15/24 dev hvnone0\n"), std::string::npos) << ip_calls;
  // No such interface on the host, so ifindex reads as 0: metric 100.
  EXPECT_NE(ip_calls.find("ip route add default via 10.0.2.2 dev hvnone0 metric 100\n"), std::string::npos) << ip_calls;
  EXPECT_EQ(resolv_conf(), "search example.internal\nnameserver 10.0.2.3\n");
}

TEST_F(DhcpScript, ALeaseWithoutRouterOrDnsSetsOnlyTheAddress) {
  const std::string ip_calls = run("bound", "interface=hvnone0 ip=192.168.9.20 mask=26 broadcast=192.168.9.63");
  EXPECT_NE(ip_calls.find("ip addr add 192.168.9.20/26 broadcast 192.168.9.63 dev hvnone0\n"), std::string::npos)
      << ip_calls;
  EXPECT_EQ(ip_calls.find("route"), std::string::npos) << ip_calls;
  EXPECT_EQ(resolv_conf(), "");
}

TEST_F(DhcpScript, DeconfigBringsTheLinkUpWithNoAddress) {
  const std::string ip_calls = run("deconfig", "interface=hvnone0");
  EXPECT_EQ(ip_calls, "ip link set hvnone0 up\nip -4 addr flush dev hvnone0\n");
}

TEST_F(DhcpScript, RenewOfANewAddressReconfigures) {
  // The stand-in `ip addr show` prints nothing: the address is not there.
  const std::string ip_calls = run("renew", "interface=hvnone0 ip=10.0.2.16 mask=24 router=10.0.2.2 dns=10.0.2.3");
  EXPECT_NE(ip_calls.find("ip addr add 10.0.2.16/24 dev hvnone0\n"), std::string::npos) << ip_calls;
  EXPECT_EQ(resolv_conf(), "nameserver 10.0.2.3\n");
}

TEST(DefaultGuest, CommandLinePutsTheConsoleOnTheChosenDevice) {
  EXPECT_EQ(default_guest_cmdline("ttyS0"), "console=ttyS0 panic=-1 tsc=reliable");
  const std::string hvc = default_guest_cmdline("hvc0");
  EXPECT_NE(hvc.find("console=hvc0"), std::string::npos) << hvc;
  EXPECT_EQ(hvc.find("console=ttyS0"), std::string::npos) << "two consoles would print every message twice: " << hvc;
  EXPECT_NE(hvc.find("earlyprintk=ttyS0"), std::string::npos) << hvc;
}

TEST(DefaultGuest, MissingPackageGivesAClearError) {
  auto cache = std::filesystem::temp_directory_path() / ("hv-default-guest-bad-" + std::to_string(::getpid()));
  DefaultGuestOptions options;
  options.cache_dir = cache.string();
  options.kernel_package = "hostvisor-no-such-package";
  auto guest = prepare_default_guest(options);
  ASSERT_FALSE(guest.ok());
  EXPECT_NE(guest.error().message().find("hostvisor-no-such-package"), std::string::npos);
  EXPECT_NE(guest.error().message().find("apt-get update"), std::string::npos);
  std::filesystem::remove_all(cache);
}

}  // namespace
}  // namespace hostvisor::guest
