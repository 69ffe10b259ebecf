// The switch as a process, started the way a VM starts it
// (connect_to_switch() spawning `hostvisor switch`): concurrent starts make
// one switch, a different dhcp= is refused, a hand-started second switch is
// refused, the switch ends with its last port, the switch (or host-only
// network) a jailed VM starts outlives it, a jailed VM cannot join a
// privileged host-only network, and the socket directory is checked. Each
// test has its own XDG_RUNTIME_DIR.
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <system_error>
#include <thread>

#include "net/switch/switch_launcher.h"
#include "net/switch/switch_paths.h"
#include "net/switch/switch_port_backend.h"
#include "net/testing/frames.h"
#include "tests/integration/child_process.h"

namespace hostvisor::net {
namespace frames = hostvisor::net::testing;
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct SwitchProcess : ::testing::Test {
  fs::path runtime;
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hv-switch-proc-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    runtime = tmpl;
    ::setenv("XDG_RUNTIME_DIR", runtime.c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("XDG_RUNTIME_DIR");
    // The test's switches end on their own once their last port has left,
    // unlinking their sockets as they go: removing the directory under them
    // races with that, so retry until one pass removes it all.
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::error_code error;
      fs::remove_all(runtime, error);
      if (!error) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "could not remove " << runtime;
  }
  Result<std::unique_ptr<SwitchPortBackend>> join(const std::string& name, uint8_t mac,
                                                  std::optional<Ipv4Network> dhcp = std::nullopt) {
    auto fd = HV_TRY(connect_to_switch({name, dhcp, HOSTVISOR_PATH, std::nullopt}));
    return SwitchPortBackend::open(std::move(fd), {name, {0x02, 0x55, 0, 0, 0, mac}, dhcp});
  }
  std::string log_of(const std::string& name) {
    std::ifstream in(runtime / "hostvisor" / "net" / (name + ".log"));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void check_the_network_outlives_a_jailed_vm(const std::string& net, const std::string& name, bool host_only,
                                              const std::function<void()>& then = nullptr);
  bool gone_within(const fs::path& path, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (fs::exists(path) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    return !fs::exists(path);
  }
};

// Children of this process (any thread's) that have ended and not been reaped.
size_t zombie_children() {
  size_t zombies = 0;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::ifstream children(task.path() / "children");
    for (pid_t child; children >> child;) {
      std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
      std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      const size_t end_of_name = text.rfind(')');
      if (end_of_name != std::string::npos && end_of_name + 2 < text.size() && text[end_of_name + 2] == 'Z') ++zombies;
    }
  }
  return zombies;
}

std::optional<size_t> receive_within(SwitchPortBackend& port, std::vector<uint8_t>& buffer,
                                     std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto got = port.receive(buffer);
    if (got.ok() && *got) return **got;
    pollfd p{port.receive_fd(), POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
  }
}

TEST_F(SwitchProcess, VmsStartingAtOnceShareOneSwitchThatEndsWithTheLastOne) {
  constexpr int kVms = 4;
  std::vector<std::unique_ptr<SwitchPortBackend>> ports(kVms);
  std::vector<std::string> errors(kVms);
  std::vector<std::thread> threads;
  for (int i = 0; i < kVms; ++i) {
    threads.emplace_back([&, i] {
      auto port = join("lab", static_cast<uint8_t>(i + 1), Ipv4Network{{0x0a4d0000}, 24});
      if (port.ok())
        ports[i] = std::move(port).value();
      else
        errors[i] = port.error().message();
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kVms; ++i) ASSERT_TRUE(ports[i]) << "VM " << i << ": " << errors[i];

  const std::string log = log_of("lab");
  size_t starts = 0;
  for (size_t at = 0; (at = log.find("listening on", at)) != std::string::npos; ++at) ++starts;
  EXPECT_EQ(starts, 1u) << log;

  // One segment: a broadcast from the first reaches every other.
  const auto frame = frames::udp_frame({{0x02, 0x55, 0, 0, 0, 1}, frames::kBroadcastMac, {1}, {2}}, 1, 2,
                                       frames::to_bytes("one switch"));
  const VirtioNetHeader header{};
  const iovec parts[2] = {{const_cast<VirtioNetHeader*>(&header), sizeof header},
                          {const_cast<uint8_t*>(frame.data()), frame.size()}};
  ASSERT_TRUE(ports[0]->send(parts).ok());
  std::vector<uint8_t> buffer(kMaxPacketSize);
  for (int i = 1; i < kVms; ++i) {
    auto got = receive_within(*ports[i], buffer, 3s);
    ASSERT_TRUE(got) << "VM " << i << " is not on the first VM's segment";
    EXPECT_EQ(*got, kVnetHeaderSize + frame.size());
  }

  const fs::path socket = runtime / "hostvisor" / "net" / "lab.sock";
  EXPECT_EQ(fs::status(runtime / "hostvisor" / "net").permissions() & fs::perms::all, fs::perms::owner_all);
  ports.clear();
  EXPECT_TRUE(gone_within(socket, 5s)) << "the switch outlived its last port:\n" << log_of("lab");
  // It leaves nothing behind: its lock file and log go too.
  EXPECT_TRUE(gone_within(runtime / "hostvisor" / "net" / "lab.lock", 2s));
  EXPECT_FALSE(fs::exists(runtime / "hostvisor" / "net" / "lab.log"));
  // The process that started it reaps it: no zombie child is left.
  size_t zombies = zombie_children();
  for (int i = 0; i < 100 && zombies > 0; ++i) {
    std::this_thread::sleep_for(20ms);
    zombies = zombie_children();
  }
  EXPECT_EQ(zombies, 0u) << "the ended switch is a zombie of the VM that started it";
  // The next VM starts a new one.
  auto again = join("lab", 9);
  EXPECT_TRUE(again.ok()) << again.error().message();
}

// A jailed VM is PID 1 of its own PID namespace, and everything in that
// namespace ends with it: the switch it starts for its network must not be
// in there, or stopping the first VM takes the network from the others.
// Runs a jailed VM with `--net NET`, joins two ports to switch NAME, stops
// the VM, and checks that the two still exchange a frame.
// Then, while the two are still on it, runs `then`.
void SwitchProcess::check_the_network_outlives_a_jailed_vm(const std::string& net, const std::string& name,
                                                           bool host_only, const std::function<void()>& then) {
  // Not headless: the guest's first line says the machine, its NIC joined
  // to the network, runs in the jail; the VM is stopped after it.
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run",      "--jail",
                                   "--accel",      "emu",      "--memory",
                                   "32M",          "--kernel", std::string(HV_GUESTS_DIR) + "/count.elf64",
                                   "--net",        net};
  // A host-only network's privileged form would make a host bridge: as
  // root, the VM runs in a network namespace of its own (unshare execs
  // hostvisor, so the child stopped is the VM).
  if (host_only && ::geteuid() == 0) argv.insert(argv.begin(), {"/usr/bin/unshare", "--net"});
  std::atomic<bool> stop{false};
  hostvisor::testing::ChildResult vm;
  std::thread runner([&] {
    vm = hostvisor::testing::run_child(
        argv, 60s, [&](const std::string& out) { return stop.load() && out.find("count 0") != std::string::npos; });
  });
  const fs::path socket = runtime / "hostvisor" / "net" / (name + ".sock");
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!fs::exists(socket) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  // Two more VMs on the network the jailed one brought up.
  auto join_the_jailed_vms_network = [&](uint8_t mac) -> Result<std::unique_ptr<SwitchPortBackend>> {
    if (!fs::exists(socket)) return Error(ErrorCode::kNotFound, "the jailed VM started no switch within 30 s");
    auto fd = HV_TRY(connect_to_switch({name, std::nullopt, HOSTVISOR_PATH, std::nullopt}));
    return SwitchPortBackend::open(std::move(fd),
                                   {.name = name, .mac = {0x02, 0x55, 0, 0, 0, mac}, .host_only = host_only});
  };
  auto b = join_the_jailed_vms_network(2);
  auto c = join_the_jailed_vms_network(3);
  stop = true;
  runner.join();
  ASSERT_TRUE(b.ok()) << b.error().message() << "\n" << vm.err;
  ASSERT_TRUE(c.ok()) << c.error().message();
  ASSERT_TRUE(vm.terminated) << vm.describe() << "\n" << vm.err;
  ASSERT_EQ(vm.err.find("running without namespaces"), std::string::npos) << "no PID namespace to test:\n" << vm.err;
  ASSERT_NE(vm.out.find("count 0"), std::string::npos) << "the jailed VM never ran:\n" << vm.err;

  // The jailed VM is gone; its switch is not, and still carries frames.
  const auto frame = frames::udp_frame({{0x02, 0x55, 0, 0, 0, 3}, frames::kBroadcastMac, {3}, {2}}, 1, 2,
                                       frames::to_bytes("still here"));
  const VirtioNetHeader header{};
  const iovec parts[2] = {{const_cast<VirtioNetHeader*>(&header), sizeof header},
                          {const_cast<uint8_t*>(frame.data()), frame.size()}};
  ASSERT_TRUE((*c)->send(parts).ok());
  std::vector<uint8_t> buffer(kMaxPacketSize);
  auto got = receive_within(**b, buffer, 3s);
  ASSERT_TRUE(got) << "the network ended with the jailed VM that started its switch:\n" << log_of(name);
  EXPECT_EQ(*got, kVnetHeaderSize + frame.size());
  if (then) then();
}

TEST_F(SwitchProcess, TheSwitchAJailedVmStartsOutlivesIt) {
  check_the_network_outlives_a_jailed_vm("internal,name=jailed,mac=02:55:00:00:00:0a", "jailed", false);
}

// A host-only network's server too: the process outside the jail starts it
// in the rootless form, which the jailed VM (no CAP_NET_ADMIN over the
// host's network from its own user namespace) joins as a switch port.
TEST_F(SwitchProcess, TheHostOnlyNetworkAJailedVmStartsOutlivesIt) {
  // Then a VM without --jail joins the form that runs: as root (which may
  // make host interfaces, so in a network namespace of its own) it finds
  // no bridge hv-jailedho and joins as a switch port, rather than failing.
  auto unjailed_vm_joins = [] {
    std::vector<std::string> argv = {HOSTVISOR_PATH, "run",
                                     "--accel",      "emu",
                                     "--memory",     "32M",
                                     "--kernel",     std::string(HV_GUESTS_DIR) + "/count.elf64",
                                     "--net",        "hostonly,name=jailedho,mac=02:55:00:00:00:0b"};
    if (::geteuid() == 0) argv.insert(argv.begin(), {"/usr/bin/unshare", "--net"});
    const auto vm = hostvisor::testing::run_child(
        argv, 60s, [](const std::string& out) { return out.find("count 0") != std::string::npos; });
    EXPECT_TRUE(vm.terminated) << vm.describe() << "\n" << vm.err;
    EXPECT_NE(vm.err.find("host-only network jailedho: the host is 10.231.7.1 (10.231.7.0/24)"), std::string::npos)
        << vm.err;
    EXPECT_NE(vm.err.find("rootless form"), std::string::npos) << vm.err;
  };
  check_the_network_outlives_a_jailed_vm("hostonly,name=jailedho,net=10.231.7.0/24,mac=02:55:00:00:00:0a",
                                         "hostonly-jailedho", true, unjailed_vm_joins);
}

// A host-only network already running in its privileged form (a bridge a
// VM without --jail made) is one a jailed VM cannot join: root of a user
// namespace of its own, it may not put a tap in the host's network. It says
// so. Everything runs in user, network and PID namespaces the test makes
// (as root or not, the first VM may make the bridge there; all of it ends
// with the namespace's first process).
TEST_F(SwitchProcess, AJailedVmSaysItCannotJoinAPrivilegedHostOnlyNetwork) {
  const std::string script =
      "\"$0\" run --accel emu --memory 32M --headless --kernel \"$1\" --net hostonly,name=priv 2>&1 &\n"
      "for i in $(seq 200); do [ -S \"$XDG_RUNTIME_DIR/hostvisor/net/hostonly-priv.sock\" ] && break; sleep 0.05; "
      "done\n"
      "\"$0\" run --jail --accel emu --memory 32M --headless --kernel \"$1\" --net hostonly,name=priv 2>&1\n"
      "echo \"jailed VM: exit $?\"\n";
  const auto run = hostvisor::testing::run_child(
      {"/usr/bin/unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
       "/bin/sh", "-c", script, HOSTVISOR_PATH, std::string(HV_GUESTS_DIR) + "/count.elf64"},
      60s);
  ASSERT_EQ(run.exit_status, 0) << run.describe() << "\n" << run.out << run.err;
  EXPECT_NE(run.out.find("privileged form: CAP_NET_ADMIN, a host bridge"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("host-only network priv runs in its privileged form (bridge hv-priv), which needs "
                         "CAP_NET_ADMIN over the host's network to join (a VM under --jail has none)"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("jailed VM: exit 1"), std::string::npos) << run.out;
}

TEST_F(SwitchProcess, AVmAskingForAnotherDhcpNetworkIsRefused) {
  auto first = join("dhcp-net", 1, Ipv4Network{{0x0a4d0000}, 24});
  ASSERT_TRUE(first.ok()) << first.error().message();
  auto other = join("dhcp-net", 2, Ipv4Network{{0x0a4e0000}, 24});
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message().find("already running with dhcp=10.77.0.0/24, not dhcp=10.78.0.0/24"),
            std::string::npos)
      << other.error().message();
  EXPECT_TRUE(join("dhcp-net", 3).ok()) << "a VM without dhcp= joins whatever runs";
}

TEST_F(SwitchProcess, ASecondSwitchByHandIsRefusedAndBadDirectoriesAreToo) {
  auto first = join("manual", 1);
  ASSERT_TRUE(first.ok()) << first.error().message();
  auto second = hostvisor::testing::run_child({HOSTVISOR_PATH, "switch", "manual"}, 10s);
  EXPECT_EQ(second.exit_status, 1);
  EXPECT_NE(second.err.find("a switch is already running on"), std::string::npos) << second.err;

  ::chmod((runtime / "hostvisor").c_str(), 0755);
  auto open_dir = hostvisor::testing::run_child({HOSTVISOR_PATH, "switch", "elsewhere"}, 10s);
  EXPECT_EQ(open_dir.exit_status, 1);
  EXPECT_NE(open_dir.err.find("is open to other users; make it private with `chmod 700"), std::string::npos)
      << open_dir.err;
}

}  // namespace
}  // namespace hostvisor::net
