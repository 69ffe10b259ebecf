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
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <csignal>

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

// A TCP socket on 127.0.0.1:`port` (0: any free port), listening.
UniqueFd tcp_listener(uint16_t port = 0) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd.get(), 4) != 0) return {};
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_in addr{};
  socklen_t length = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  return ntohs(addr.sin_port);
}

// A port nothing listens on now.
uint16_t free_port() { return port_of(tcp_listener().get()); }

// The errno of binding (`bind`) or connecting to 127.0.0.1:`port` over TCP (0: it worked).
int tcp_errno(bool bind, uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_LOOPBACK)}};
  const auto* address = reinterpret_cast<sockaddr*>(&addr);
  const int result = bind ? ::bind(fd.get(), address, sizeof addr) : ::connect(fd.get(), address, sizeof addr);
  return result == 0 ? 0 : errno;
}

std::string expect_tcp(bool bind, uint16_t port, int expected_errno) {
  const int err = tcp_errno(bind, port);
  if (err == expected_errno) return "";
  return std::string(bind ? "bind" : "connect") + " to port " + std::to_string(port) + ": expected " +
         (expected_errno ? std::strerror(expected_errno) : "success") + ", got " +
         (err ? std::strerror(err) : "success") + "\n";
}

TEST(Sandbox, BindsOnlyItsTcpPortsAndConnectsOnlyWhenAllowed) {
  const UniqueFd outside = tcp_listener();  // a host service the VM did not forward
  ASSERT_TRUE(outside.valid());
  const uint16_t service = port_of(outside.get()), forwarded = free_port(), other = free_port();
  for (const bool connect_any : {false, true}) {
    const std::string problem = in_child([&] {
      auto entered =
          enter_sandbox({.rules = {{"/proc/self", FsAccess::kRead}},
                         .tcp = TcpRules{.bind_ports = {forwarded}, .connect_any = connect_any}});
      if (!entered) return "enter_sandbox: " + entered.error().message();
      if (!entered->tcp_restricted) return "TCP not restricted at Landlock ABI " + std::to_string(entered->landlock_abi);
      std::string problems;
      problems += expect_tcp(/*bind=*/true, forwarded, 0);
      problems += expect_tcp(/*bind=*/true, other, EACCES);
      problems += expect_tcp(/*bind=*/true, 0, EACCES);  // an ephemeral port is a port not given too
      problems += expect_tcp(/*bind=*/false, service, connect_any ? 0 : EACCES);
      // UDP is not TCP: its ports are not Landlock's.
      UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      sockaddr_in addr{.sin_family = AF_INET, .sin_port = htons(other), .sin_addr = {htonl(INADDR_LOOPBACK)}};
      if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        problems += std::string("a UDP bind was refused: ") + std::strerror(errno) + "\n";
      return problems;
    });
    EXPECT_EQ(problem, "") << "connect_any=" << connect_any;
  }
  // bind_any: every port may be bound, and connect is still refused.
  const std::string any_port = in_child([&] {
    auto entered = enter_sandbox({.rules = {{"/proc/self", FsAccess::kRead}}, .tcp = TcpRules{.bind_any = true}});
    if (!entered) return "enter_sandbox: " + entered.error().message();
    return expect_tcp(/*bind=*/true, other, 0) + expect_tcp(/*bind=*/true, 0, 0) +
           expect_tcp(/*bind=*/false, service, EACCES);
  });
  EXPECT_EQ(any_port, "");
  // Without TCP rules nothing about TCP changes.
  const std::string unrestricted = in_child([&] {
    auto entered = enter_sandbox({.rules = {{"/proc/self", FsAccess::kRead}}});
    if (!entered) return "enter_sandbox: " + entered.error().message();
    return expect_tcp(/*bind=*/true, other, 0) + expect_tcp(/*bind=*/false, service, 0);
  });
  EXPECT_EQ(unrestricted, "");
}

TEST(Sandbox, ReachesNoAbstractUnixSocketAndSignalsNoProcessMadeOutsideIt) {
  // An abstract socket made outside the sandbox, and one made inside.
  auto abstract_address = [](const std::string& name) {
    sockaddr_un addr{.sun_family = AF_UNIX, .sun_path = {}};
    name.copy(addr.sun_path + 1, name.size());
    return std::make_pair(addr, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size()));
  };
  const std::string outside_name = "hostvisor-sandbox-test-" + std::to_string(::getpid());
  UniqueFd outside(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const auto outside_address = abstract_address(outside_name);
  const sockaddr_un outside_addr = outside_address.first;
  const socklen_t outside_length = outside_address.second;
  ASSERT_EQ(::bind(outside.get(), reinterpret_cast<const sockaddr*>(&outside_addr), outside_length), 0);
  ASSERT_EQ(::listen(outside.get(), 4), 0);
  const std::string problem = in_child([&] {
    // A process outside the sandbox: it ends when this child does (its pipe
    // closes), so it outlives no test.
    int fds[2];
    if (::pipe(fds) != 0) return std::string("pipe failed");
    const pid_t outsider = ::fork();
    if (outsider == 0) {
      ::close(fds[1]);
      char byte;
      (void)!::read(fds[0], &byte, 1);
      ::_exit(0);
    }
    ::close(fds[0]);
    auto entered = enter_sandbox({.rules = {{"/proc/self", FsAccess::kRead}}});
    if (!entered) return "enter_sandbox: " + entered.error().message();
    if (!entered->scoped) return "not scoped at Landlock ABI " + std::to_string(entered->landlock_abi);
    std::string problems;
    UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(client.get(), reinterpret_cast<const sockaddr*>(&outside_addr), outside_length) == 0 || errno != EPERM)
      problems += std::string("connect to an abstract socket made outside: ") + std::strerror(errno) + "\n";
    // One made inside (the same sandbox) is reachable.
    const auto [inside_addr, inside_length] = abstract_address(outside_name + "-inside");
    UniqueFd inside(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    UniqueFd inside_client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::bind(inside.get(), reinterpret_cast<const sockaddr*>(&inside_addr), inside_length) != 0 ||
        ::listen(inside.get(), 4) != 0 ||
        ::connect(inside_client.get(), reinterpret_cast<const sockaddr*>(&inside_addr), inside_length) != 0)
      problems += std::string("an abstract socket made inside: ") + std::strerror(errno) + "\n";
    // A signal to the outsider is refused; so is kill(pid, 0), with EPERM
    // (not ESRCH): the snapshot writer's "does its writer still run" reads
    // that as running, and leaves the directory alone.
    if (::kill(outsider, SIGTERM) == 0 || errno != EPERM)
      problems += std::string("SIGTERM to a process outside: ") + std::strerror(errno) + "\n";
    if (::kill(outsider, 0) == 0 || errno != EPERM)
      problems += std::string("kill(outside, 0): ") + std::strerror(errno) + "\n";
    // A process it starts (the switch) is inside: it may end it.
    const pid_t insider = ::fork();
    if (insider == 0) {
      ::pause();
      ::_exit(0);
    }
    if (::kill(insider, SIGTERM) != 0) problems += std::string("SIGTERM to its own child: ") + std::strerror(errno) + "\n";
    int status = 0;
    ::waitpid(insider, &status, 0);
    if (!WIFSIGNALED(status)) problems += "its own child did not end by the signal\n";
    ::close(fds[1]);
    return problems;
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
