// The sandbox on this kernel: each test confines a forked child and checks
// what it can still reach. Landlock and capabilities are required here: a
// kernel without them fails these tests rather than skipping them.
#include "sandbox/jail/sandbox.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/fd.h"
#include "sandbox/jail/capabilities.h"
#include "sandbox/jail/jail.h"
#include "sandbox/jail/landlock.h"
#include "sandbox/jail/testing/in_child.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::sandbox {
namespace {

namespace fs = std::filesystem;
using hostvisor::testing::in_child;
using hostvisor::testing::ScratchDir;

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// "" if open(path, flags) gives `expected_errno` (0: succeeds).
std::string expect_open(const fs::path& path, int flags, int expected_errno) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  const int err = fd < 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  if (err == expected_errno) return "";
  return "open " + path.string() + ": expected " + (expected_errno ? std::strerror(expected_errno) : "success") +
         ", got " + (err ? std::strerror(err) : "success") + "\n";
}

// A field of /proc/self/status ("NoNewPrivs", "CapEff", ...).
std::string status_field(const std::string& name) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(name + ":", 0) == 0) return line.substr(line.find_first_not_of(" \t", name.size() + 1));
  return "";
}

TEST(Landlock, TheKernelHasIt) {
  auto abi = landlock_abi();
  ASSERT_TRUE(abi) << abi.error().message();
  EXPECT_GE(*abi, 1);
}

TEST(Sandbox, OpensOnlyWhatItsRulesAllowEachWithItsOwnAccess) {
  ScratchDir scratch{"sandbox-rules"};
  const fs::path readable = scratch.path / "readable", writable = scratch.path / "writable.img",
                 made = scratch.path / "made", outside = scratch.path / "outside";
  for (const fs::path& dir : {readable, made, outside}) fs::create_directories(dir);
  write_text(readable / "kernel", "k");
  write_text(writable, "disk");
  write_text(outside / "secret", "s");
  write_text(scratch.path / "beside.img", "b");
  const SandboxPolicy policy{.rules = {{readable.string(), FsAccess::kRead},
                                       {writable.string(), FsAccess::kReadWrite},
                                       {made.string(), FsAccess::kCreate},
                                       {(scratch.path / "not-here").string(), FsAccess::kRead, true},
                                       {"/proc/self", FsAccess::kRead}}};
  const std::string problem = in_child([&] {
    auto entered = enter_sandbox(policy);
    if (!entered) return "enter_sandbox: " + entered.error().message();
    if (entered->landlock_abi < 1) return std::string("no Landlock");
    std::string problems;
    problems += expect_open(readable / "kernel", O_RDONLY, 0);
    problems += expect_open(readable / "kernel", O_WRONLY, EACCES);
    problems += expect_open(readable / "new", O_WRONLY | O_CREAT, EACCES);
    problems += expect_open(writable, O_RDWR, 0);
    problems += expect_open(writable, O_RDWR | O_TRUNC, 0);
    problems += expect_open(made / "snapshot", O_WRONLY | O_CREAT, 0);
    if (::mkdir((made / "dir").c_str(), 0700) != 0) problems += "mkdir in a create directory failed\n";
    if (::rename((made / "dir").c_str(), (made / "renamed").c_str()) != 0) problems += "rename failed\n";
    if (::symlink("x", (made / "link").c_str()) == 0 || errno != EACCES)
      problems += "a symlink in a create directory (not a share) was allowed\n";
    if (::mknod((made / "fifo").c_str(), S_IFIFO | 0600, 0) == 0) problems += "a fifo was allowed\n";
    // The file beside an allowed one, a file elsewhere, the host's files.
    problems += expect_open(scratch.path / "beside.img", O_RDONLY, EACCES);
    problems += expect_open(outside / "secret", O_RDONLY, EACCES);
    problems += expect_open("/etc/passwd", O_RDONLY, EACCES);
    problems += expect_open("/tmp/hostvisor-sandbox-test-escape", O_WRONLY | O_CREAT, EACCES);
    // A hard link out of the allowed tree is refused too.
    if (::link(writable.c_str(), (made / "linked").c_str()) == 0)
      problems += "a hard link of the read-write file into the create directory was allowed\n";
    if (status_field("NoNewPrivs") != "1") problems += "NoNewPrivs is " + status_field("NoNewPrivs") + "\n";
    return problems;
  });
  EXPECT_EQ(problem, "");
}

TEST(Sandbox, AShareTakesSymlinksAndFifosButNeverDeviceNodes) {
  ScratchDir scratch{"sandbox-share"};
  const fs::path share = scratch.path / "share";
  fs::create_directories(share);
  const std::string problem = in_child([&] {
    auto entered = enter_sandbox({.rules = {{share.string(), FsAccess::kShare}}});
    if (!entered) return "enter_sandbox: " + entered.error().message();
    std::string problems;
    if (::symlink("target", (share / "link").c_str()) != 0) problems += "symlink in a share refused\n";
    if (::mknod((share / "fifo").c_str(), S_IFIFO | 0600, 0) != 0) problems += "fifo in a share refused\n";
    if (::mknod((share / "null").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0 || errno != EACCES)
      problems += "a device node in a share was not refused by Landlock\n";
    return problems;
  });
  EXPECT_EQ(problem, "");
}

TEST(Sandbox, DropsEveryCapabilityAndTheBoundingSetButTheOnesKept) {
  if (::geteuid() != 0) GTEST_FAIL() << "this test runs as root (it checks that a root process loses its capabilities)";
  const std::string problem = in_child([] {
    auto entered = enter_sandbox({.rules = {{"/proc/self", FsAccess::kRead}}, .keep = {{CAP_NET_ADMIN, "a test"}}});
    if (!entered) return "enter_sandbox: " + entered.error().message();
    std::string problems;
    if (!entered->capabilities_dropped || !entered->bounding_set_dropped) problems += "not reported as dropped\n";
    const std::string kept = "0000000000001000";  // bit 12, CAP_NET_ADMIN
    for (const char* field : {"CapEff", "CapPrm", "CapBnd"})
      if (status_field(field) != kept) problems += std::string(field) + " is " + status_field(field) + "\n";
    for (const char* field : {"CapInh", "CapAmb"})
      if (status_field(field) != "0000000000000000")
        problems += std::string(field) + " is " + status_field(field) + "\n";
    return problems;
  });
  EXPECT_EQ(problem, "");
  const std::string none = in_child([] {
    auto entered = enter_sandbox({.rules = {{"/proc/self", FsAccess::kRead}}});
    if (!entered) return "enter_sandbox: " + entered.error().message();
    return status_field("CapEff") == "0000000000000000" ? std::string() : "CapEff is " + status_field("CapEff");
  });
  EXPECT_EQ(none, "");
}

TEST(Sandbox, RefusesToStartOnceAThreadRuns) {
  const std::string problem = in_child([] {
    std::string problems;
    std::thread other([] { ::pause(); });
    other.detach();
    auto entered = enter_sandbox({});
    if (entered) return std::string("entered with two threads");
    if (entered.error().message().find("2 threads") == std::string::npos)
      return "unexpected error: " + entered.error().message();
    return std::string();
  });
  EXPECT_EQ(problem, "");
}

TEST(Sandbox, AMissingRequiredPathIsAnErrorNamingIt) {
  const std::string problem = in_child([] {
    auto entered = enter_sandbox({.rules = {{"/nonexistent/disk.img", FsAccess::kReadWrite}}});
    if (entered) return std::string("entered without the disk");
    if (entered.error().message().find("/nonexistent/disk.img") == std::string::npos)
      return "error does not name the path: " + entered.error().message();
    return std::string();
  });
  EXPECT_EQ(problem, "");
}

std::string ns_of(const std::string& kind) {
  std::error_code error;
  return fs::read_symlink("/proc/self/ns/" + kind, error).string();
}

TEST(Jail, RunsInNewNamespacesWithARootOfOnlyItsPaths) {
  ScratchDir scratch{"jail"};
  const fs::path vm = scratch.path / "vm", disk = scratch.path / "vm" / "disk.img";
  const fs::path readonly = scratch.path / "readonly";
  fs::create_directories(vm);
  fs::create_directories(readonly);
  write_text(readonly / "kernel", "kernel");
  write_text(disk, "disk");
  write_text(scratch.path / "other.img", "other");
  fs::permissions(scratch.path, fs::perms::owner_all);  // as a runtime directory is
  const std::string outside_user = ns_of("user"), outside_net = ns_of("net");
  const std::string problem = in_child([&] {
    auto jailed = enter_jail({.paths = {{vm.string(), FsAccess::kCreate},
                                        {"/dev/null", FsAccess::kDevice},
                                        {readonly.string(), FsAccess::kRead},
                                        {"/proc/self", FsAccess::kRead}}});
    if (!jailed) return "enter_jail: " + jailed.error().message();
    std::string problems;
    if (::getpid() != 1) problems += "not PID 1 of a new PID namespace: " + std::to_string(::getpid()) + "\n";
    if (ns_of("user") == outside_user) problems += "same user namespace\n";
    if (ns_of("net") == outside_net) problems += "same network namespace\n";
    if (::getuid() != 0) problems += "uid inside is not 0\n";
    problems += expect_open(disk, O_RDWR, 0);
    problems += expect_open(vm / "snapshot", O_RDWR | O_CREAT, 0);
    problems += expect_open(scratch.path / "other.img", O_RDONLY, ENOENT);
    problems += expect_open("/etc/passwd", O_RDONLY, ENOENT);
    problems += expect_open("/dev/null", O_RDWR, 0);
    problems += expect_open(readonly / "kernel", O_RDONLY, 0);
    problems += expect_open(readonly / "new-file", O_RDWR | O_CREAT, EROFS);
    std::error_code error;
    for (const auto& node : fs::directory_iterator("/dev", error))
      if (node.path().filename() != "null") problems += "/dev holds " + node.path().string() + "\n";
    if (!fs::exists("/proc/self/status")) problems += "no /proc\n";
    // The directories above a bound path have the host's modes: a private
    // one (the switches' runtime directory's parent) stays private.
    struct stat parent {};
    if (::stat(scratch.path.c_str(), &parent) != 0 || (parent.st_mode & 0777) != 0700) {
      char mode[16];
      std::snprintf(mode, sizeof mode, "%o", parent.st_mode & 0777);
      problems += "the private " + scratch.path.string() + " has mode " + mode + " in the jail\n";
    }
    return problems;
  });
  EXPECT_EQ(problem, "");
  EXPECT_EQ(fs::exists(scratch.path / "vm" / "snapshot"), true) << "a file made in the jail is not on the host";
}

TEST(SandboxMode, ParsesOnAndOff) {
  EXPECT_EQ(*parse_sandbox_mode("on"), SandboxMode::kOn);
  EXPECT_EQ(*parse_sandbox_mode("off"), SandboxMode::kOff);
  auto bad = parse_sandbox_mode("kill");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("on or off"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor::sandbox
