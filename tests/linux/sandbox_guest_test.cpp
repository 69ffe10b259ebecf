// The sandboxed VM process (#19) on the default guest. One boot under
// --jail (and the sandbox, on by default): the process is in namespaces of
// its own with no capabilities, and the guest still reads its qcow2 disk's
// backing file, writes the disk and a share; a snapshot asked for outside
// the allowed directories is refused. One clone of the shared snapshot
// (a restore under the sandbox) writes a snapshot where it may.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "block/image_open.h"
#include "block/qcow2/image.h"
#include "control/control_client.h"
#include "tests/linux/default_guest_snapshot.h"
#include "tests/linux/control_socket_wait.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using control::ControlClient;

constexpr auto kBootTimeout = 300s;
constexpr auto kCommandTimeout = 120s;
constexpr const char* kBackingMarker = "IN-THE-BACKING-FILE";
constexpr const char* kGuestWrite = "WRITTEN-BY-THE-JAILED-GUEST";

std::string read_text(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// A field of /proc/PID/status.
std::string status_field(pid_t pid, const std::string& name) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(name + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", name.size() + 1));
  return "";
}

std::string ns_of(const std::string& pid, const std::string& kind) {
  std::error_code error;
  return fs::read_symlink("/proc/" + pid + "/ns/" + kind, error).string();
}

// The bytes of sector `sector` of the image at `path` (read through its chain).
std::string sector_text(const fs::path& path, uint64_t sector, size_t length) {
  auto image = block::open_image(path.string(), {});
  if (!image) return "open_image: " + image.error().message();
  std::string bytes(length, '\0');
  auto read = (*image)->read(sector * 512, bytes.data(), length);
  if (!read) return "read: " + read.error().message();
  return bytes;
}

TEST(LinuxSandbox, JailedGuestUsesItsDiskChainAndShareInItsOwnNamespacesAndIsRefusedElsewhere) {
  ScratchDir scratch{"sandbox-guest"};
  const fs::path disks = scratch.path / "disks", share = scratch.path / "share", run = scratch.path / "run";
  for (const fs::path& dir : {disks, share, run}) fs::create_directories(dir);
  const fs::path base = disks / "base.raw", top = disks / "top.qcow2", socket = run / "vm.sock";
  {
    std::ofstream file(base);
    file.seekp(200 * 512);
    file << kBackingMarker;
  }
  fs::resize_file(base, 4 << 20);
  ASSERT_TRUE(
      block::Qcow2Image::create(top.string(), {.size = 4 << 20, .backing_file = "base.raw", .backing_format = "raw"}));
  std::ofstream(share / "hello.txt") << "from the host\n";

  GuestConsole vm;
  ASSERT_TRUE(vm.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--net", "none", "--memory", "512M", "--jail",
                        "--disk", top.string(), "--share", share.string() + ",tag=work", "--control", socket.string()}))
      << vm.failure();
  ASSERT_TRUE(vm.wait_for_text("Type 'poweroff' to stop.", kBootTimeout)) << vm.failure() << vm.err();

  // The VM runs in the child of the process started: PID 1 of its own PID
  // namespace, in new user, mount and network namespaces (--net none).
  const std::string self = std::to_string(vm.pid());
  std::string child = read_text("/proc/" + self + "/task/" + self + "/children");
  child.erase(child.find_last_not_of(" \n") + 1);
  ASSERT_FALSE(child.empty()) << "the jail's VM process is missing";
  for (const char* kind : {"user", "mnt", "pid", "net"}) EXPECT_NE(ns_of(child, kind), ns_of("self", kind)) << kind;
  const pid_t vm_pid = std::stoi(child);
  EXPECT_EQ(status_field(vm_pid, "NoNewPrivs"), "1");
  EXPECT_EQ(status_field(vm_pid, "CapEff"), "0000000000000000");
  EXPECT_EQ(status_field(vm_pid, "CapBnd"), "0000000000000000");
  EXPECT_EQ(status_field(vm_pid, "NSpid"), child + "\t1");
  // Its root holds the VM's files and a /dev of its device nodes only.
  const fs::path jail_root = "/proc/" + child + "/root";
  EXPECT_TRUE(fs::exists(jail_root / top.relative_path()));
  EXPECT_FALSE(fs::exists(jail_root / "etc/shadow"));
  EXPECT_FALSE(fs::exists(jail_root / "home"));
  for (const auto& node : fs::directory_iterator(jail_root / "dev")) {
    const std::string name = node.path().filename().string();
    EXPECT_TRUE(name == "kvm" || name == "null" || name == "zero" || name == "urandom" || name == "random") << name;
  }

  // The disk: a sector of the backing file read through the overlay, a
  // write that lands in the overlay.
  EXPECT_EQ(guest_ok(vm, "dd if=/dev/vda bs=512 skip=200 count=1 2>/dev/null | head -c 19", kCommandTimeout),
            kBackingMarker);
  guest_ok(vm,
           std::string("printf ") + kGuestWrite +
               " | dd of=/dev/vda bs=512 seek=100 conv=notrunc,sync 2>/dev/null "
               "&& sync",
           kCommandTimeout);
  // The share, both ways.
  EXPECT_EQ(guest_ok(vm, "cat /mnt/work/hello.txt", kCommandTimeout), "from the host\n");
  guest_ok(vm, "echo from the guest > /mnt/work/guest.txt && ln -s guest.txt /mnt/work/link", kCommandTimeout);
  EXPECT_EQ(read_text(share / "guest.txt"), "from the guest\n");
  EXPECT_EQ(fs::read_symlink(share / "link"), "guest.txt");

  // A snapshot outside the allowed directories: refused before the VM is
  // asked, saying how to allow it.
  auto client = wait_for_control_socket(socket, vm);
  ASSERT_TRUE(client) << "no control socket at " << socket << "\n" << vm.err();
  auto refused = client->call("snapshot", {{"dir", (scratch.path / "elsewhere" / "s1").string()}});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("--sandbox-write"), std::string::npos) << refused.error().message();
  EXPECT_FALSE(fs::exists(scratch.path / "elsewhere"));

  vm.send_line("poweroff");
  EXPECT_EQ(vm.wait_exit(60s), 0) << vm.failure() << vm.err();
  EXPECT_EQ(sector_text(top, 100, std::strlen(kGuestWrite)), kGuestWrite);
  EXPECT_EQ(sector_text(base, 100, 4), std::string(4, '\0'));
}

TEST(LinuxSandbox, RestoredCloneWritesASnapshotBesideItsControlSocketOnly) {
  ScratchDir scratch{"sandbox-clone"};
  const fs::path socket = scratch.path / "vm.sock", snapshot = scratch.path / "snapshot";
  DefaultGuestSnapshot booted;
  ASSERT_TRUE(booted.ok()) << booted.error();
  GuestConsole vm;
  ASSERT_TRUE(booted.start_clone(vm, {"--control", socket.string()})) << vm.failure();
  auto client = wait_for_control_socket(socket, vm);
  ASSERT_TRUE(client) << "no control socket at " << socket << "\n" << vm.err();
  EXPECT_EQ(status_field(vm.pid(), "NoNewPrivs"), "1");
  EXPECT_EQ(status_field(vm.pid(), "CapEff"), "0000000000000000");

  auto refused = client->call("snapshot", {{"dir", (booted.dir().parent_path() / "not-here").string()}});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("sandboxed VM may write snapshots only beneath " + scratch.path.string()),
            std::string::npos)
      << refused.error().message();
  auto written = client->call("snapshot", {{"dir", snapshot.string()}});
  ASSERT_TRUE(written) << written.error().message() << "\n" << vm.err();
  EXPECT_TRUE(fs::exists(snapshot / "header"));
  EXPECT_EQ(guest_ok(vm, "echo still here", kCommandTimeout), "still here\n");
  vm.send_line("poweroff");
  EXPECT_EQ(vm.wait_exit(60s), 0) << vm.failure() << vm.err();
}

}  // namespace
}  // namespace hostvisor::testing
