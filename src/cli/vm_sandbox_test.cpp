// The VM process's rules, applied for real in a forked child (the test-only
// stand-in for a VM process that tries to open what it was not given): its
// disks with their backing chain, its share and kernel open; a disk beside
// them, a file elsewhere, a disk image the API might name later do not.
#include "cli/vm_sandbox.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "block/image_open.h"
#include "block/qcow2/image.h"
#include "cli/device_options.h"
#include "sandbox/jail/testing/in_child.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::cli {
namespace {

namespace fs = std::filesystem;
using hostvisor::testing::in_child;
using hostvisor::testing::ScratchDir;

std::string expect_open(const fs::path& path, int flags, int expected_errno) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  const int err = fd < 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  if (err == expected_errno) return "";
  return "open " + path.string() + ": expected " + (expected_errno ? std::strerror(expected_errno) : "success") +
         ", got " + (err ? std::strerror(err) : "success") + "\n";
}

// base.raw <- mid.qcow2 <- top.qcow2 (relative backing names), a share, a
// kernel, and an image beside the disks that the VM was not given.
struct VmFiles {
  ScratchDir scratch{"vm-sandbox"};
  fs::path disks, top, mid, base, beside, share, kernel, secret;
  VmFiles() {
    disks = scratch.path / "disks";
    share = scratch.path / "share";
    fs::create_directories(disks);
    fs::create_directories(share);
    top = disks / "top.qcow2", mid = disks / "mid.qcow2", base = disks / "base.raw", beside = disks / "other.img";
    kernel = scratch.path / "vmlinuz";
    fs::resize_file((std::ofstream(base), base), 1 << 20);
    std::ofstream(beside) << "another VM's disk";
    std::ofstream(kernel) << "kernel";
    secret = scratch.path / "secret";
    std::ofstream(secret) << "the user's";
    EXPECT_TRUE(block::Qcow2Image::create(mid, {.size = 1 << 20, .backing_file = "base.raw", .backing_format = "raw"}));
    EXPECT_TRUE(
        block::Qcow2Image::create(top, {.size = 1 << 20, .backing_file = "mid.qcow2", .backing_format = "qcow2"}));
  }
  MachineConfig config() const {
    MachineConfig config;
    config.kernel_path = kernel.string();
    config.disks.push_back(*parse_disk_config(top.string()));
    config.shares.push_back(*parse_share_config(share.string() + ",tag=s"));
    return config;
  }
};

TEST(BackingChain, ListsTheImageAndEveryBackingFileInOrder) {
  VmFiles files;
  auto chain = block::backing_chain(files.top.string());
  ASSERT_TRUE(chain) << chain.error().message();
  EXPECT_EQ(*chain, (std::vector<std::string>{files.top.string(), files.mid.string(), files.base.string()}));
}

TEST(VmSandbox, TheVmOpensItsDisksWholeChainShareAndKernelAndNothingElse) {
  VmFiles files;
  auto policy = vm_sandbox_policy(files.config(), {});
  ASSERT_TRUE(policy) << policy.error().message();
  EXPECT_TRUE(policy->keep.empty());
  const std::string problem = in_child([&] {
    auto entered = sandbox::enter_sandbox(*policy);
    if (!entered) return "enter_sandbox: " + entered.error().message();
    std::string problems;
    // The disk as the VM opens it: writable, its backing files read-only.
    auto image = block::open_image(files.top.string(), {.writable = true});
    if (!image) problems += "open_image: " + image.error().message() + "\n";
    problems += expect_open(files.mid, O_RDONLY, 0);
    problems += expect_open(files.mid, O_RDWR, EACCES);
    problems += expect_open(files.base, O_RDWR, EACCES);
    problems += expect_open(files.kernel, O_RDONLY, 0);
    problems += expect_open(files.share / "made-by-the-guest", O_RDWR | O_CREAT, 0);
    // What the VM was not given: a disk a later request might name, a file
    // in its disks' directory, the host's files.
    problems += expect_open(files.beside, O_RDONLY, EACCES);
    problems += expect_open(files.disks / "new-overlay.qcow2", O_RDWR | O_CREAT, EACCES);
    problems += expect_open("/etc/shadow", O_RDONLY, EACCES);
    problems += expect_open(files.secret, O_RDONLY, EACCES);
    auto other = block::open_image(files.beside.string(), {.writable = true});
    if (other) problems += "open_image of a disk the VM was not given succeeded\n";
    // What every VM needs: its libraries, KVM.
    problems += expect_open("/etc/ld.so.cache", O_RDONLY, 0);
    if (::access("/dev/kvm", F_OK) == 0) problems += expect_open("/dev/kvm", O_RDWR, 0);
    return problems;
  });
  EXPECT_EQ(problem, "");
}

TEST(VmSandbox, SnapshotsGoBeneathTheSnapshotAndControlDirectoriesOnly) {
  VmFiles files;
  const fs::path snapshots = files.scratch.path / "snapshots", runtime = files.scratch.path / "run";
  fs::create_directories(snapshots);
  fs::create_directories(runtime);
  const std::vector<std::string> roots =
      snapshot_roots((snapshots / "last").string(), (runtime / "control.sock").string(), {});
  EXPECT_EQ(roots, (std::vector<std::string>{snapshots.string(), runtime.string()}));
  EXPECT_TRUE(check_snapshot_target((snapshots / "s1").string(), roots));
  EXPECT_TRUE(check_snapshot_target((runtime / "suspended").string(), roots));
  auto refused = check_snapshot_target((files.scratch.path / "elsewhere" / "s1").string(), roots);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("--sandbox-write " + (files.scratch.path / "elsewhere").string()),
            std::string::npos)
      << refused.error().message();

  auto policy =
      vm_sandbox_policy(files.config(), {.control = (runtime / "control.sock").string(), .snapshot_roots = roots});
  ASSERT_TRUE(policy) << policy.error().message();
  const std::string problem = in_child([&] {
    auto entered = sandbox::enter_sandbox(*policy);
    if (!entered) return "enter_sandbox: " + entered.error().message();
    std::string problems;
    problems += expect_open(snapshots / "s1", O_RDWR | O_CREAT, 0);
    // A snapshot freezes the disk by a hard link and puts an overlay beside it.
    if (::link(files.top.c_str(), (snapshots / "disk0.qcow2").c_str()) != 0)
      problems += std::string("hard link of the disk into the snapshot: ") + std::strerror(errno) + "\n";
    problems += expect_open(files.disks / "top.qcow2.overlay", O_RDWR | O_CREAT, 0);
    problems += expect_open(files.scratch.path / "elsewhere", O_RDWR | O_CREAT, EACCES);
    return problems;
  });
  EXPECT_EQ(problem, "");
}

TEST(VmSandbox, KeepsCapNetAdminOnlyForNetworksThatMakeTapsAtEachBoot) {
  VmFiles files;
  MachineConfig config = files.config();
  config.nets.push_back(*parse_net_config("user"));
  auto user = vm_sandbox_policy(config, {});
  ASSERT_TRUE(user) << user.error().message();
  EXPECT_TRUE(user->keep.empty());
  config.nets.push_back(*parse_net_config("bridge,br=br0"));
  auto bridge = vm_sandbox_policy(config, {});
  ASSERT_TRUE(bridge) << bridge.error().message();
  ASSERT_EQ(bridge->keep.size(), 1u);
  EXPECT_EQ(bridge->keep[0].capability, CAP_NET_ADMIN);
}

TEST(VmSandbox, BindsTheTcpPortsItsForwardsNameAndConnectsOnlyForNat) {
  VmFiles files;
  MachineConfig config = files.config();
  EXPECT_EQ(vm_tcp_rules(config, {})->bind_ports, std::vector<uint16_t>{});
  EXPECT_FALSE(vm_tcp_rules(config, {})->connect_any) << "no NIC: nothing connects out";
  config.nets.push_back(*parse_net_config("user,hostfwd=tcp::2222-:22,hostfwd=udp::5353-:53,hostfwd=tcp:0.0.0.0:80-:80"));
  config.nets.push_back(*parse_net_config("user,restrict=on,hostfwd=tcp::2222-:22,hostfwd=tcp::8080-:8080"));
  auto nat = vm_tcp_rules(config, {9000});
  ASSERT_TRUE(nat);
  // Each TCP forward's host port once (a UDP forward is not TCP), and the extra one.
  EXPECT_EQ(nat->bind_ports, (std::vector<uint16_t>{80, 2222, 8080, 9000}));
  EXPECT_TRUE(nat->connect_any) << "slirp connects out for the guest";
  // Only restricted NAT, taps and internal networks: nothing connects out.
  MachineConfig closed = files.config();
  closed.nets.push_back(*parse_net_config("user,restrict=on,hostfwd=tcp::2222-:22"));
  closed.nets.push_back(*parse_net_config("tap,ifname=tap9"));
  closed.nets.push_back(*parse_net_config("internal,name=lan"));
  auto restricted = vm_tcp_rules(closed, {});
  ASSERT_TRUE(restricted);
  EXPECT_EQ(restricted->bind_ports, std::vector<uint16_t>{2222});
  EXPECT_FALSE(restricted->connect_any);
  // A host-only network's gateway may run in a switch this VM starts.
  closed.nets.push_back(*parse_net_config("hostonly,name=ho"));
  EXPECT_FALSE(vm_tcp_rules(closed, {}));
  auto policy = vm_sandbox_policy(config, {.extra_bind_ports = {9000}});
  ASSERT_TRUE(policy) << policy.error().message();
  ASSERT_TRUE(policy->tcp);
  EXPECT_EQ(policy->tcp->bind_ports, nat->bind_ports);
  EXPECT_FALSE(policy->tcp->bind_any);
  // --sandbox-bind any (the daemon's): every port, but only for a VM whose
  // user-mode NIC can take hostfwd-add.
  auto any = vm_sandbox_policy(config, {.bind_any_port = true});
  ASSERT_TRUE(any) << any.error().message();
  EXPECT_TRUE(any->tcp->bind_any);
  EXPECT_FALSE(vm_tcp_rules(files.config(), {}, /*bind_any=*/true)->bind_any) << "no user-mode NIC: no forward to add";
}

TEST(VmSandbox, AMissingSnapshotDirectoryIsRefusedAtStart) {
  VmFiles files;
  auto policy = vm_sandbox_policy(files.config(), {.snapshot_roots = {(files.scratch.path / "no-such").string()}});
  ASSERT_FALSE(policy);
  EXPECT_NE(policy.error().message().find("no-such"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor::cli
