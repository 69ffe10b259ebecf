// The switch process's loop with real sockets: hostvisor ports (the
// SwitchPortBackend a VM uses) and plain ones (a QEMU -netdev stream peer
// is a raw stream socket here), DHCP as a port, and peers that misbehave.
#include "net/switch/switch_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "net/switch/network_lock.h"
#include "net/switch/stream_framing.h"
#include "net/switch/switch_paths.h"
#include "net/switch/switch_port_backend.h"
#include "net/testing/frames.h"

namespace hostvisor::net {
namespace {

using namespace testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr MacAddress kA{0x02, 0, 0, 0, 0, 0xa}, kQ{0x02, 0, 0, 0, 0, 0x51};

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return {};
  return fd;
}

// A peer that speaks only the framing, as QEMU's -netdev stream does.
struct PlainPeer {
  UniqueFd fd;
  StreamFrameReader reader{1, kMaxPacketSize};
  void send(std::span<const uint8_t> frame) {
    const auto prefix = encode_stream_length(static_cast<uint32_t>(frame.size()));
    ASSERT_EQ(::write(fd.get(), prefix.data(), prefix.size()), 4);
    ASSERT_EQ(::write(fd.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  }
  // The next frame within `timeout`; nothing on timeout or EOF.
  std::optional<Bytes> next(std::chrono::milliseconds timeout = 2s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto frame = reader.next();
      if (!frame.ok()) return std::nullopt;
      if (*frame) return Bytes((*frame)->begin(), (*frame)->end());
      pollfd p{fd.get(), POLLIN, 0};
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      const auto space = reader.free_space();
      const ssize_t n = ::read(fd.get(), space.data(), space.size());
      if (n <= 0) return std::nullopt;
      reader.commit(static_cast<size_t>(n));
    }
  }
  // True once the switch closed the connection.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[65536];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
      }
    }
    return false;
  }
};

// The next packet from a backend (header + frame), polling its receive fd.
std::optional<Bytes> receive(SwitchPortBackend& backend, std::chrono::milliseconds timeout = 2s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Bytes buffer(kMaxPacketSize);
  for (;;) {
    auto got = backend.receive(buffer);
    if (!got.ok()) return std::nullopt;
    if (*got) {
      buffer.resize(**got);
      return buffer;
    }
    pollfd p{backend.receive_fd(), POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
  }
}

Result<void> send(SwitchPortBackend& backend, const VirtioNetHeader& header, const Bytes& frame) {
  const iovec parts[2] = {{const_cast<VirtioNetHeader*>(&header), sizeof header},
                          {const_cast<uint8_t*>(frame.data()), frame.size()}};
  return backend.send(parts);
}

struct RunningSwitch : ::testing::Test {
  fs::path dir = fs::temp_directory_path() / ("hv-switch-test-" + std::to_string(::getpid()));
  std::string socket = (dir / "t.sock").string();
  std::unique_ptr<SwitchServer> server;
  std::thread thread;
  Result<void> outcome = ok();
  bool done = false;

  void start(SwitchServerOptions options = {}) {
    fs::create_directories(dir);
    options.socket_path = socket;
    auto created = SwitchServer::create(options);
    ASSERT_TRUE(created.ok()) << created.error().message();
    server = std::move(created).value();
    thread = std::thread([this] {
      outcome = server->run();
      done = true;
    });
  }
  uint8_t next_mac = 1;
  std::unique_ptr<SwitchPortBackend> join(std::optional<Ipv4Network> dhcp = std::nullopt) {
    auto backend = SwitchPortBackend::open(connect_unix(socket), {"t", {0x02, 0, 0, 0, 1, next_mac++}, dhcp});
    EXPECT_TRUE(backend.ok()) << backend.error().message();
    return backend.ok() ? std::move(backend).value() : nullptr;
  }
  PlainPeer plain() { return PlainPeer{connect_unix(socket)}; }
  bool ended_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    return done;
  }
  void TearDown() override {
    if (server && !done) server->stop();
    if (thread.joinable()) thread.join();
    fs::remove_all(dir);
  }
};

TEST_F(RunningSwitch, HostvisorAndPlainPortsExchangeFramesInTheirOwnForm) {
  start();
  auto a = join(), b = join();
  ASSERT_TRUE(a && b);
  PlainPeer q = plain();
  const Bytes hello = udp_frame({kQ, kBroadcastMac, {0x0a000003}, {0xffffffff}}, 1, 2, to_bytes("from qemu"));
  q.send(hello);
  for (auto* backend : {a.get(), b.get()}) {
    auto got = receive(*backend);
    ASSERT_TRUE(got);
    ASSERT_EQ(got->size(), kVnetHeaderSize + hello.size());
    EXPECT_TRUE(std::equal(hello.begin(), hello.end(), got->begin() + kVnetHeaderSize));
  }
  // A unicast reply from A reaches the plain peer (learned) without a header, and not B.
  const Bytes reply = udp_frame({kA, kQ, {0x0a000001}, {0x0a000003}}, 2, 1, to_bytes("to qemu"));
  ASSERT_TRUE(send(*a, {}, reply).ok());
  auto got = q.next();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, reply);
  EXPECT_FALSE(receive(*b, 200ms)) << "a unicast to a learned MAC went to another port";
}

// 64 KiB TSO frames cross between hostvisor ports whole once the receiver
// takes TSO; a plain peer gets them as checksummed segments.
TEST_F(RunningSwitch, TsoFramesCrossWholeAndAreSegmentedForPlainPeers) {
  start();
  auto a = join(), b = join();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->set_receive_offloads({true, true, true, false}).ok());
  PlainPeer q = plain();
  q.send(udp_frame({kQ, kA, {0x0a000003}, {0x0a000001}}, 1, 2, to_bytes("learn me")));
  ASSERT_TRUE(receive(*a));  // flooded, as A is unknown yet
  ASSERT_TRUE(receive(*b));
  std::this_thread::sleep_for(100ms);  // the Offloads frame and the learning are done

  TcpSegment s;
  s.source_port = 5000;
  s.destination_port = 6000;
  s.flags = kTcpAck;
  s.payload.resize(60000, 0x5a);
  const Bytes super = tcp_frame({kA, kBroadcastMac, {0x0a000001}, {0x0a000002}}, s);
  const VirtioNetHeader header = tso4_header();
  ASSERT_TRUE(send(*a, header, super).ok());

  auto whole = receive(*b);
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->size(), kVnetHeaderSize + super.size());
  VirtioNetHeader got_header;
  std::memcpy(&got_header, whole->data(), sizeof got_header);
  EXPECT_EQ(got_header.gso_type, kGsoTcpV4);

  size_t payload = 0;
  while (payload < s.payload.size()) {
    auto segment = q.next();
    ASSERT_TRUE(segment) << payload << " bytes came";
    auto parsed = parse_frame(*segment);
    ASSERT_TRUE(parsed);
    EXPECT_TRUE(parsed->checksums_ok);
    EXPECT_LE(segment->size(), 1514u);
    payload += parsed->payload.size();
  }
  EXPECT_EQ(payload, s.payload.size());
  EXPECT_EQ(a->counters()->tx_packets, 1u);
}

TEST_F(RunningSwitch, DhcpAnswersOnTheSegmentAndAMismatchIsAClearError) {
  SwitchServerOptions options;
  options.dhcp = Ipv4Network{{0x0a090000}, 24};
  start(options);
  PlainPeer q = plain();
  q.send(dhcp_frame(kQ, kDhcpDiscover, 77));
  auto offer = q.next();
  ASSERT_TRUE(offer);
  auto parsed = parse_frame(*offer);
  ASSERT_TRUE(parsed);
  auto dhcp = parse_dhcp(parsed->payload);
  ASSERT_TRUE(dhcp);
  EXPECT_EQ(dhcp->message_type, kDhcpOffer);
  EXPECT_TRUE(options.dhcp->contains(dhcp->your_address));

  EXPECT_TRUE(join(options.dhcp));  // the same dhcp= is fine
  EXPECT_TRUE(join());              // and so is none
  auto other =
      SwitchPortBackend::open(connect_unix(socket), {"t", {0x02, 0, 0, 0, 2, 1}, Ipv4Network{{0x0a0a0000}, 24}});
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.error().message().find("already running with dhcp=10.9.0.0/24"), std::string::npos)
      << other.error().message();
}

TEST_F(RunningSwitch, ASecondPortWithTheSameMacIsRefusedWithAClearError) {
  start();
  const MacAddress mac{0x02, 0x42, 0, 0, 0, 7};
  auto first = SwitchPortBackend::open(connect_unix(socket), {"t", mac, std::nullopt});
  ASSERT_TRUE(first.ok()) << first.error().message();
  auto second = SwitchPortBackend::open(connect_unix(socket), {"t", mac, std::nullopt});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message().find("give this NIC its own mac="), std::string::npos) << second.error().message();
  auto other = SwitchPortBackend::open(connect_unix(socket), {"t", {0x02, 0x42, 0, 0, 0, 8}, std::nullopt});
  EXPECT_TRUE(other.ok()) << "the refusal must not disturb the switch";
}

TEST_F(RunningSwitch, AMalformedStreamClosesOnlyThatPort) {
  start();
  auto a = join();
  ASSERT_TRUE(a);
  PlainPeer bad = plain(), good = plain();
  const uint8_t zero_length[4] = {0, 0, 0, 0};
  ASSERT_EQ(::write(bad.fd.get(), zero_length, 4), 4);
  EXPECT_TRUE(bad.closed_within(2s));
  PlainPeer huge = plain();
  const auto too_long = encode_stream_length(9000);
  ASSERT_EQ(::write(huge.fd.get(), too_long.data(), 4), 4);
  EXPECT_TRUE(huge.closed_within(2s));

  const Bytes frame = udp_frame({kQ, kBroadcastMac, {1}, {2}}, 1, 2, to_bytes("still here"));
  good.send(frame);
  auto got = receive(*a);
  ASSERT_TRUE(got);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), got->begin() + kVnetHeaderSize));
}

// A peer that never reads: frames past its queue are dropped, and once its
// queue has not moved for the stall timeout it is disconnected; the others
// never wait.
TEST_F(RunningSwitch, APeerThatDoesNotReadIsDroppedNotWaitedFor) {
  SwitchServerOptions options;
  options.stall_timeout = 300ms;
  options.port_output_bytes = 64 << 10;
  start(options);
  PlainPeer sleeper = plain(), sender = plain(), listener = plain();
  // None of them says anything: after the hello wait they are plain ports.
  // The sleeper never reads.
  std::this_thread::sleep_for(700ms);
  const Bytes frame = udp_frame({kQ, kBroadcastMac, {1}, {2}}, 1, 2, Bytes(1400, 7));
  const auto start_time = std::chrono::steady_clock::now();
  int delivered = 0;
  for (int i = 0; i < 3000; ++i) {
    sender.send(frame);
    if (listener.next(1s)) ++delivered;
  }
  EXPECT_EQ(delivered, 3000) << "a port that reads got every frame";
  EXPECT_LT(std::chrono::steady_clock::now() - start_time, 20s);
  // Reading would be progress: let the stall timeout pass first.
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(sleeper.closed_within(3s)) << "the switch kept a peer that reads nothing";
}

TEST_F(RunningSwitch, EndsWhenTheLastPortLeaves) {
  start();
  {
    auto a = join();
    PlainPeer q = plain();
    ASSERT_TRUE(a);
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(done);
  }
  EXPECT_TRUE(ended_within(3s));
  EXPECT_TRUE(outcome.ok());
  EXPECT_FALSE(fs::exists(socket)) << "the switch left its socket behind";
}

TEST_F(RunningSwitch, EndsAfterTheGracePeriodIfNobodyJoins) {
  SwitchServerOptions options;
  options.idle_grace = 200ms;
  start(options);
  EXPECT_TRUE(ended_within(3s));
}

// A free TCP port on 127.0.0.1 (bound and let go).
uint16_t free_loopback_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length) != 0)
    return 0;
  return ntohs(addr.sin_port);
}

// A non-blocking connect to 127.0.0.1:port; the socket, or an invalid fd if
// it was refused at once.
UniqueFd connect_loopback(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS)
    return {};
  return fd;
}

// The next frame from `backend` that `wanted` accepts, skipping others.
template <typename Predicate>
std::optional<ParsedFrame> receive_matching(SwitchPortBackend& backend, Predicate wanted,
                                            std::chrono::milliseconds timeout = 3s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto packet = receive(backend, 200ms);
    if (!packet) continue;
    auto parsed = parse_frame(std::span<const uint8_t>(*packet).subspan(kVnetHeaderSize));
    if (parsed && wanted(*parsed)) return parsed;
  }
  return std::nullopt;
}

// A rootless host-only network's switch: the host gateway (.1) answers ARP
// and pings for its own address and nothing else; a VM's forward goes to
// the address DHCP then gives it, brings a host connection to it, is
// refused to a second VM, and goes when its VM does.
TEST_F(RunningSwitch, AHostGatewayAnswersForTheHostAndTakesForwardsThatGoWithTheirVm) {
  const Ipv4Network network{{0x0a5a0000}, 24};  // 10.90.0.0/24
  const Ipv4Address gateway{0x0a5a0001};
  SwitchServerOptions options;
  options.host_gateway = network;
  start(options);
  PlainPeer keeper = plain();  // keeps the switch running after the VMs leave
  const uint16_t port = free_loopback_port();
  ASSERT_NE(port, 0);
  const HostForward wanted{ForwardProtocol::kTcp, {0x7f000001}, port, std::nullopt, 80};
  auto vm = SwitchPortBackend::open(connect_unix(socket),
                                    {.name = "t", .mac = kA, .dhcp = network, .host_only = true, .forwards = {wanted}});
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  EXPECT_EQ((*vm)->switch_network(), "10.90.0.0/24");
  ASSERT_EQ((*vm)->forwards().size(), 1u);
  const auto vm_address = (*vm)->forwards()[0].guest_address;
  ASSERT_TRUE(vm_address && network.contains(*vm_address) && vm_address->value > gateway.value + 1)
      << "the forward names no VM address of the network";

  // DHCP offers the VM the address its forward goes to.
  ASSERT_TRUE(send(**vm, {}, dhcp_frame(kA, kDhcpDiscover, 5)).ok());
  auto offer = receive_matching(**vm, [](const ParsedFrame& f) { return f.destination_port == 68; });
  ASSERT_TRUE(offer);
  auto dhcp = parse_dhcp(offer->payload);
  ASSERT_TRUE(dhcp);
  EXPECT_EQ(dhcp->your_address, *vm_address);
  EXPECT_FALSE(dhcp->router) << "a host-only network has no router";

  // The gateway answers ARP and pings for its own address.
  ASSERT_TRUE(send(**vm, {}, arp_frame(1, kA, *vm_address, {}, gateway, kBroadcastMac)).ok());
  auto arp = receive_matching(**vm, [](const ParsedFrame& f) { return f.ether_type == kEtherTypeArp; });
  ASSERT_TRUE(arp);
  EXPECT_EQ(arp->arp_operation, 2);
  EXPECT_EQ(arp->arp_sender, gateway);
  const MacAddress gateway_mac = arp->arp_sender_mac;
  ASSERT_TRUE(send(**vm, {}, icmp_echo_frame({kA, gateway_mac, *vm_address, gateway}, 7, 1, to_bytes("ping"))).ok());
  auto echo = receive_matching(**vm, [](const ParsedFrame& f) { return f.protocol == kProtocolIcmp; });
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->icmp_type, 0);
  EXPECT_EQ(echo->source, gateway);
  // Nothing beyond: to another address through the gateway's MAC, no answer.
  for (const Ipv4Address beyond : {Ipv4Address{0x7f000001}, Ipv4Address{0x0a630002}}) {
    ASSERT_TRUE(send(**vm, {}, icmp_echo_frame({kA, gateway_mac, *vm_address, beyond}, 7, 2, to_bytes("ping"))).ok());
    EXPECT_FALSE(receive_matching(
        **vm, [](const ParsedFrame& f) { return f.protocol == kProtocolIcmp; }, 500ms))
        << format_ipv4_address(beyond) << " answered through the gateway";
  }

  // A host connection to the forward reaches the VM: a SYN to port 80 (after
  // an ARP question, if the gateway has not learned the VM's MAC yet).
  UniqueFd client = connect_loopback(port);
  ASSERT_TRUE(client.valid());
  std::optional<ParsedFrame> syn;
  for (int i = 0; i < 2 && !(syn && syn->protocol == kProtocolTcp); ++i) {
    syn = receive_matching(**vm, [&](const ParsedFrame& f) {
      return f.protocol == kProtocolTcp || (f.ether_type == kEtherTypeArp && f.arp_target == *vm_address);
    });
    if (syn && syn->ether_type == kEtherTypeArp)
      ASSERT_TRUE(send(**vm, {}, arp_frame(2, kA, *vm_address, gateway_mac, gateway, gateway_mac)).ok());
  }
  ASSERT_TRUE(syn && syn->protocol == kProtocolTcp) << "no connection from the forward reached the VM";
  EXPECT_EQ(syn->destination, *vm_address);
  EXPECT_EQ(syn->destination_port, 80);
  EXPECT_EQ(syn->tcp.flags & kTcpSyn, kTcpSyn);
  client.reset();

  // The same host port for another VM: refused, naming the port.
  auto second = SwitchPortBackend::open(
      connect_unix(socket), {.name = "t", .mac = kQ, .dhcp = std::nullopt, .host_only = true, .forwards = {wanted}});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message().find("the port is taken"), std::string::npos) << second.error().message();

  // The VM goes, and its forward with it.
  vm->reset();
  bool closed = false;
  for (int i = 0; i < 50 && !closed; ++i) {
    std::this_thread::sleep_for(50ms);
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    closed = ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0;
  }
  EXPECT_TRUE(closed) << "the forward outlived its VM";
  keeper.fd.reset();
  ASSERT_TRUE(ended_within(3s));
  EXPECT_GE(server->counters().gateway_refused, 2u);
  EXPECT_EQ(server->counters().forwards_added, 1u);
  EXPECT_EQ(server->counters().forwards_refused, 1u);
}

// A VM asking a host-only switch that has no gateway (an internal network's,
// as a privileged form's server would not answer at all) gets a clear error.
TEST_F(RunningSwitch, AHostOnlyPortRefusesASwitchWithoutAGateway) {
  start();
  auto vm = SwitchPortBackend::open(connect_unix(socket),
                                    {.name = "t", .mac = kA, .dhcp = std::nullopt, .host_only = true, .forwards = {}});
  ASSERT_FALSE(vm.ok());
  EXPECT_NE(vm.error().message().find("has no host gateway"), std::string::npos) << vm.error().message();
}

// A switch that ends removes its lock file under the lock; a starter that
// was waiting must end up holding the lock of the file at the path, not of
// the removed one (or a third starter would lock a new file beside it).
TEST(NetworkLock, AWaiterOnARemovedLockFileLocksTheFileThatIsThere) {
  const fs::path path = fs::temp_directory_path() / ("hv-lock-test-" + std::to_string(::getpid()) + ".lock");
  auto held = lock_network(path.string());
  ASSERT_TRUE(held.ok()) << held.error().message();
  std::optional<Result<UniqueFd>> waiter;
  std::atomic<bool> locked_too{false};
  std::thread starter([&] {
    waiter = lock_network(path.string());
    locked_too = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(locked_too) << "the lock did not exclude the second starter";
  remove_network_files(path.string(), "");
  held->reset();
  starter.join();
  ASSERT_TRUE(waiter && waiter->ok());
  struct stat locked = {};
  struct stat current = {};
  ASSERT_EQ(::fstat((*waiter)->get(), &locked), 0);
  ASSERT_EQ(::stat(path.c_str(), &current), 0) << "the waiter holds a lock on a file that is gone";
  EXPECT_EQ(locked.st_ino, current.st_ino);
  // And it excludes the next one.
  UniqueFd other(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_NE(::flock(other.get(), LOCK_EX | LOCK_NB), 0);
  fs::remove(path);
}

TEST(SwitchPaths, NamesAreCheckedAndTheDirectoryIsPrivate) {
  EXPECT_TRUE(check_network_name("lab-1.a_b").ok());
  EXPECT_FALSE(check_network_name("").ok());
  EXPECT_FALSE(check_network_name(".hidden").ok());
  EXPECT_FALSE(check_network_name("a/b").ok());
  EXPECT_FALSE(check_network_name(std::string(65, 'a')).ok());

  const fs::path dir = fs::temp_directory_path() / ("hv-switch-dir-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(ensure_private_directory(dir.string()).ok());
  EXPECT_EQ(fs::status(dir).permissions() & fs::perms::all, fs::perms::owner_all);
  fs::permissions(dir, fs::perms::group_read | fs::perms::group_exec, fs::perm_options::add);
  auto open_dir = ensure_private_directory(dir.string());
  ASSERT_FALSE(open_dir.ok());
  EXPECT_NE(open_dir.error().message().find("chmod 700"), std::string::npos);
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  fs::create_directory_symlink(fs::temp_directory_path(), dir);
  EXPECT_FALSE(ensure_private_directory(dir.string()).ok()) << "a symlink is not the private directory";
  fs::remove(dir);
}

}  // namespace
}  // namespace hostvisor::net
