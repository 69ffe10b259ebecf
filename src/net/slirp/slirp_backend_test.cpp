// The NAT driven by a test-side guest (net/testing/test_guest.h) sending real
// Ethernet frames, with the backend on a real EventLoop. Everything the
// guest reaches is on this machine's loopback: servers the test runs on
// 127.0.0.1, reached at the gateway address, and forwards bound to
// 127.0.0.1. DNS forwarding stays off so nothing can leave the machine.
#include "net/slirp/slirp_backend.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "net/internet_checksum.h"
#include "net/testing/test_guest.h"
#include "vmm/event_loop.h"

namespace hostvisor::net {
namespace {

using namespace testing;
using namespace std::chrono_literals;

constexpr Ipv4Address kGateway{0x0a000202};     // 10.0.2.2
constexpr Ipv4Address kDns{0x0a000203};         // 10.0.2.3
constexpr Ipv4Address kFirstLease{0x0a00020f};  // 10.0.2.15

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  return ntohs(a.sin_port);
}

// A socket of `type` bound to 127.0.0.1 on a port the kernel picks.
UniqueFd bound_socket(int type, uint16_t port = 0) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  timeval timeout{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  const sockaddr_in a = loopback(port);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) return UniqueFd();
  if (type == SOCK_STREAM) ::listen(fd.get(), 8);
  return fd;
}

// A port free on 127.0.0.1 just now, for a forward to bind.
uint16_t free_port(int type) { return local_port(bound_socket(type).get()); }

UniqueFd connect_tcp(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval timeout{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const sockaddr_in a = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) return UniqueFd();
  return fd;
}

bool read_exactly(int fd, Bytes& out, size_t length) {
  out.resize(length);
  for (size_t at = 0; at < length;) {
    const ssize_t n = ::recv(fd, out.data() + at, length - at, 0);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

bool write_all_bytes(int fd, const Bytes& data) {
  for (size_t at = 0; at < data.size();) {
    const ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

// The first connection to listening socket `server` within 5 s, with reads
// that give up after 5 s; an invalid fd if none came.
UniqueFd accept_within_5s(int server) {
  pollfd p{server, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return UniqueFd();
  UniqueFd connection(::accept4(server, nullptr, nullptr, SOCK_CLOEXEC));
  timeval timeout{5, 0};
  ::setsockopt(connection.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return connection;
}

Bytes pattern(size_t length, uint8_t seed) {
  Bytes b(length);
  for (size_t i = 0; i < length; ++i) b[i] = static_cast<uint8_t>(i * 31 + seed + (i >> 8));
  return b;
}

// The local addresses (as /proc/net writes them, "0100007F:1F90") of
// sockets bound to `port`.
std::vector<std::string> proc_net_bindings(const char* table, uint16_t port) {
  std::ifstream in(std::string("/proc/net/") + table);
  std::vector<std::string> found;
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, ":%04X", port);
  std::string line;
  std::getline(in, line);  // heading
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local;
    fields >> slot >> local;
    if (local.size() > 5 && local.ends_with(suffix)) found.push_back(local);
  }
  return found;
}

UserNetOption parse_user(const std::string& text) {
  auto option = parse_net_option(text);
  EXPECT_TRUE(option.ok()) << option.error().message();
  return std::get<UserNetOption>(option.value());
}

class SlirpBackendTest : public ::testing::Test {
 protected:
  static SlirpBackendLimits no_dns() {
    SlirpBackendLimits limits;
    limits.forward_dns = false;
    return limits;
  }

  void create(const std::string& option, SlirpBackendLimits limits = no_dns()) {
    auto created = SlirpBackend::create(parse_user(option), limits);
    ASSERT_TRUE(created.ok()) << created.error().message();
    backend = std::move(created).value();
    guest = std::make_unique<TestGuest>(*backend);
  }
  // What the machine does: the loop watches service_fd() and runs service().
  void run_on_loop() {
    loop = EventLoop::create().value();
    ASSERT_TRUE(loop->add(backend->service_fd(), [b = backend.get()](uint32_t) { b->service(); }).ok());
    loop->start();
  }
  void start(const std::string& option, SlirpBackendLimits limits = no_dns()) {
    create(option, limits);
    run_on_loop();
  }
  void start_with_lease(const std::string& option, SlirpBackendLimits limits = no_dns()) {
    ASSERT_NO_FATAL_FAILURE(start(option, limits));
    auto lease = guest->lease();
    ASSERT_TRUE(lease.ok()) << lease.error().message();
  }
  void TearDown() override {
    if (loop) {
      loop->stop();
      loop->remove(backend->service_fd());
    }
  }

  std::unique_ptr<SlirpBackend> backend;
  std::unique_ptr<EventLoop> loop;  // stops before the backend goes
  std::unique_ptr<TestGuest> guest;
};

TEST_F(SlirpBackendTest, TheGuestLeasesAnAddressAndTheGatewayAnswersArp) {
  ASSERT_NO_FATAL_FAILURE(start("user"));
  auto lease = guest->lease();
  ASSERT_TRUE(lease.ok()) << lease.error().message();
  EXPECT_EQ(lease->your_address, kFirstLease);
  EXPECT_EQ(lease->router, kGateway);
  EXPECT_EQ(lease->dns, kDns);
  EXPECT_EQ(lease->subnet_mask, (Ipv4Address{0xffffff00}));
  EXPECT_EQ(guest->address(), kFirstLease);
  EXPECT_EQ(guest->gateway(), kGateway);

  ASSERT_TRUE(guest->send(arp_frame(1, guest->mac(), guest->address(), {}, kGateway, kBroadcastMac)).ok());
  auto reply =
      guest->wait_for([](const ParsedFrame& f) { return f.ether_type == kEtherTypeArp && f.arp_operation == 2; });
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->arp_sender, kGateway);
  EXPECT_EQ(reply->arp_target, kFirstLease);
  EXPECT_EQ(reply->destination_mac, guest->mac());
  EXPECT_EQ(reply->arp_sender_mac, guest->gateway_mac());
}

TEST_F(SlirpBackendTest, NetPicksTheNetworkOfTheLease) {
  ASSERT_NO_FATAL_FAILURE(start("user,net=192.168.76.0/24"));
  auto lease = guest->lease();
  ASSERT_TRUE(lease.ok()) << lease.error().message();
  EXPECT_EQ(format_ipv4_address(lease->your_address), "192.168.76.15");
  EXPECT_EQ(format_ipv4_address(lease->router.value_or(Ipv4Address{})), "192.168.76.2");
  EXPECT_EQ(format_ipv4_address(lease->dns.value_or(Ipv4Address{})), "192.168.76.3");
}

TEST_F(SlirpBackendTest, TheGatewayAnswersIcmpEchoAndTheCountersCountIt) {
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user"));
  const NetCounters before = *backend->counters();
  const Bytes data = to_bytes("hostvisor ping");
  for (uint16_t sequence = 1; sequence <= 3; ++sequence) {
    ASSERT_TRUE(guest->send(icmp_echo_frame(guest->to(kGateway), 0x77, sequence, data)).ok());
    auto reply = guest->wait_for([&](const ParsedFrame& f) {
      return f.protocol == kProtocolIcmp && f.icmp_type == 0 && f.icmp_sequence == sequence;
    });
    ASSERT_TRUE(reply.has_value()) << "echo " << sequence;
    EXPECT_EQ(reply->icmp_id, 0x77);
    EXPECT_EQ(reply->source, kGateway);
    EXPECT_EQ(reply->payload, data);
    EXPECT_TRUE(reply->checksums_ok);
  }
  const NetCounters after = *backend->counters();
  EXPECT_EQ(after.tx_packets - before.tx_packets, 3u);
  EXPECT_GE(after.rx_packets - before.rx_packets, 3u);
  EXPECT_GE(after.rx_bytes - before.rx_bytes, 3 * (14 + 20 + 8 + data.size()));
  EXPECT_EQ(after.tx_dropped, 0u);
}

TEST_F(SlirpBackendTest, ATcpConnectionToTheHostsLoopbackCarriesDataBothWays) {
  UniqueFd server = bound_socket(SOCK_STREAM);
  const uint16_t port = local_port(server.get());
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user"));

  const Bytes up = pattern(5000, 1), down = pattern(100'000, 2);
  auto host_side = std::async(std::launch::async, [&]() -> Bytes {
    UniqueFd connection = accept_within_5s(server.get());
    if (connection.get() < 0) return {};
    Bytes got;
    if (!read_exactly(connection.get(), got, up.size())) return {};
    if (!write_all_bytes(connection.get(), down)) return {};
    std::this_thread::sleep_for(200ms);  // let the guest read before the FIN
    return got;
  });

  GuestTcp tcp(*guest, kGateway, 40000, port);
  auto syn_ack = tcp.connect();
  ASSERT_TRUE(syn_ack.has_value());
  ASSERT_FALSE(syn_ack->tcp.flags & kTcpRst);
  ASSERT_TRUE(tcp.send(up));
  auto received = tcp.receive(down.size());
  ASSERT_TRUE(received.has_value());
  EXPECT_EQ(*received, down);
  EXPECT_EQ(host_side.get(), up);
}

// What a restore of the NAT keeps, by libslirp's design: slirp_state_save()
// saves the DHCP leases (and guestfwd sockets), not the NAT's TCP
// connections, whose host sockets die with the process that took the
// snapshot. So the guest keeps its address, a connection it had open is
// reset by the restored NAT at its next segment, and new connections work.
TEST_F(SlirpBackendTest, ARestoredNatKeepsTheLeasesResetsOldConnectionsAndMakesNewOnes) {
  UniqueFd server = bound_socket(SOCK_STREAM);
  const uint16_t port = local_port(server.get());
  ASSERT_NO_FATAL_FAILURE(start("user"));
  // Another guest leases first, so this one's address is not the first a
  // fresh NAT would hand out.
  TestGuest other(*backend, MacAddress{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc});
  ASSERT_TRUE(other.lease().ok());
  ASSERT_TRUE(guest->lease().ok());
  const Ipv4Address address = guest->address();
  ASSERT_NE(address, kFirstLease);

  GuestTcp tcp(*guest, kGateway, 40000, port);
  auto syn_ack = tcp.connect();
  ASSERT_TRUE(syn_ack && !(syn_ack->tcp.flags & kTcpRst));
  const Bytes before = to_bytes("before the snapshot");
  ASSERT_TRUE(tcp.send(before));
  UniqueFd connection = accept_within_5s(server.get());
  ASSERT_GE(connection.get(), 0);
  Bytes got;
  ASSERT_TRUE(read_exactly(connection.get(), got, before.size()));
  EXPECT_EQ(got, before);

  // The snapshot, then the process that took it ends: the host peer sees
  // the connection close.
  loop->stop();
  loop->remove(backend->service_fd());
  auto state = backend->save_state();
  ASSERT_TRUE(state.ok()) << state.error().message();
  const MacAddress mac = guest->mac();
  guest.reset();
  loop.reset();
  backend.reset();
  char byte;
  EXPECT_EQ(::recv(connection.get(), &byte, 1, 0), 0) << "the host peer should see the connection end";

  // The restore: a new NAT from the saved state.
  ASSERT_NO_FATAL_FAILURE(create("user"));
  ASSERT_TRUE(backend->load_state(*state).ok());
  ASSERT_NO_FATAL_FAILURE(run_on_loop());
  auto lease = guest->lease();
  ASSERT_TRUE(lease.ok()) << lease.error().message();
  EXPECT_EQ(guest->mac(), mac);
  EXPECT_EQ(guest->address(), address) << "the guest's lease was not kept";

  // The old connection's next segment is answered with a reset.
  TcpSegment segment{.source_port = 40000,
                     .destination_port = port,
                     .seq = 0x1001 + static_cast<uint32_t>(before.size()),
                     .ack = syn_ack->tcp.seq + 1,
                     .flags = kTcpAck | kTcpPsh,
                     .payload = to_bytes("after the restore")};
  ASSERT_TRUE(guest->send(tcp_frame(guest->to(kGateway), segment)).ok());
  auto reset = guest->wait_for([&](const ParsedFrame& f) {
    return f.protocol == kProtocolTcp && f.source_port == port && f.destination_port == 40000;
  });
  ASSERT_TRUE(reset.has_value()) << "no answer to the old connection's segment";
  EXPECT_TRUE(reset->tcp.flags & kTcpRst);

  // A new connection carries data.
  GuestTcp fresh(*guest, kGateway, 40001, port);
  auto accepted = fresh.connect();
  ASSERT_TRUE(accepted && !(accepted->tcp.flags & kTcpRst));
  const Bytes after = to_bytes("a new connection");
  ASSERT_TRUE(fresh.send(after));
  UniqueFd second = accept_within_5s(server.get());
  ASSERT_GE(second.get(), 0);
  ASSERT_TRUE(read_exactly(second.get(), got, after.size()));
  EXPECT_EQ(got, after);
}

TEST_F(SlirpBackendTest, ATcpForwardBringsAHostClientToTheGuest) {
  const uint16_t port = free_port(SOCK_STREAM);
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user,hostfwd=tcp::" + std::to_string(port) + "-:8080"));

  const Bytes request = to_bytes("GET / HTTP/1.0\r\n\r\n"), response = pattern(30'000, 3);
  auto client = std::async(std::launch::async, [&]() -> Bytes {
    UniqueFd fd = connect_tcp(port);
    if (!fd.valid() || !write_all_bytes(fd.get(), request)) return {};
    Bytes got;
    if (!read_exactly(fd.get(), got, response.size())) return {};
    return got;
  });

  auto syn = guest->wait_for([](const ParsedFrame& f) {
    return f.protocol == kProtocolTcp && f.destination_port == 8080 && (f.tcp.flags & kTcpSyn);
  });
  ASSERT_TRUE(syn.has_value()) << "the guest saw no SYN";
  EXPECT_EQ(syn->destination, kFirstLease);
  GuestTcp tcp(*guest, syn->source, 8080, syn->source_port);
  ASSERT_TRUE(tcp.accept(*syn));
  auto got = tcp.receive(request.size());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, request);
  ASSERT_TRUE(tcp.send(response));
  EXPECT_EQ(client.get(), response);
}

// Every connection opens and closes a host socket, so fd numbers come back
// as new sockets: the poll set must follow slirp through the reuse.
TEST_F(SlirpBackendTest, ManyShortConnectionsThroughAForwardAreNoneLost) {
  const uint16_t port = free_port(SOCK_STREAM);
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user,hostfwd=tcp::" + std::to_string(port) + "-:7"));
  constexpr int kConnections = 1000;  // as issue 10 asks of the guest-level test
  auto client = std::async(std::launch::async, [&] {
    int echoed = 0;
    for (int i = 0; i < kConnections; ++i) {
      UniqueFd fd = connect_tcp(port);
      const Bytes message = to_bytes("connection " + std::to_string(i));
      Bytes got;
      if (fd.valid() && write_all_bytes(fd.get(), message) && read_exactly(fd.get(), got, message.size()) &&
          got == message) {
        char eof;
        if (::recv(fd.get(), &eof, 1, 0) == 0) ++echoed;  // the guest closed first
      }
    }
    return echoed;
  });
  for (int i = 0; i < kConnections; ++i) {
    auto syn = guest->wait_for([](const ParsedFrame& f) {
      return f.protocol == kProtocolTcp && f.destination_port == 7 && (f.tcp.flags & kTcpSyn);
    });
    ASSERT_TRUE(syn.has_value()) << "connection " << i;
    GuestTcp tcp(*guest, syn->source, 7, syn->source_port);
    ASSERT_TRUE(tcp.accept(*syn)) << "connection " << i;
    const size_t length = ("connection " + std::to_string(i)).size();
    auto got = tcp.receive(length);
    ASSERT_TRUE(got.has_value()) << "connection " << i;
    ASSERT_TRUE(tcp.send(*got)) << "connection " << i;
    ASSERT_TRUE(tcp.close()) << "connection " << i;
  }
  EXPECT_EQ(client.get(), kConnections);
}

// Idle, the loop wakes only for slirp's timers (at most once a second
// with nothing to do), not on every epoll_wait.
TEST_F(SlirpBackendTest, AnIdleNatDoesNotSpin) {
  ASSERT_NO_FATAL_FAILURE(create("user,hostfwd=tcp::" + std::to_string(free_port(SOCK_STREAM)) + "-:22"));
  std::atomic<int> passes{0};
  loop = EventLoop::create().value();
  ASSERT_TRUE(loop->add(backend->service_fd(),
                        [&](uint32_t) {
                          ++passes;
                          backend->service();
                        })
                  .ok());
  loop->start();
  ASSERT_TRUE(guest->lease().ok());
  std::this_thread::sleep_for(100ms);
  const int before = passes;
  std::this_thread::sleep_for(1500ms);
  EXPECT_LE(passes - before, 4);
}

TEST_F(SlirpBackendTest, AUdpForwardDeliversADatagramAndItsAnswer) {
  const uint16_t port = free_port(SOCK_DGRAM);
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user,hostfwd=udp::" + std::to_string(port) + "-:5353"));
  UniqueFd client = bound_socket(SOCK_DGRAM);
  const sockaddr_in to = loopback(port);
  const Bytes question = to_bytes("ping over udp");
  ASSERT_EQ(
      ::sendto(client.get(), question.data(), question.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to),
      static_cast<ssize_t>(question.size()));

  auto datagram =
      guest->wait_for([](const ParsedFrame& f) { return f.protocol == kProtocolUdp && f.destination_port == 5353; });
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->destination, kFirstLease);
  EXPECT_EQ(datagram->payload, question);
  EXPECT_TRUE(datagram->checksums_ok);

  const Bytes answer = to_bytes("pong");
  ASSERT_TRUE(guest->send(udp_frame(guest->to(datagram->source), 5353, datagram->source_port, answer)).ok());
  Bytes got(64);
  const ssize_t n = ::recv(client.get(), got.data(), got.size(), 0);
  ASSERT_EQ(n, static_cast<ssize_t>(answer.size()));
  got.resize(static_cast<size_t>(n));
  EXPECT_EQ(got, answer);
}

TEST_F(SlirpBackendTest, AnEmptyHostAddressBindsLoopbackOnly) {
  const uint16_t tcp = free_port(SOCK_STREAM), udp = free_port(SOCK_DGRAM);
  ASSERT_NO_FATAL_FAILURE(
      create("user,hostfwd=tcp::" + std::to_string(tcp) + "-:80,hostfwd=udp::" + std::to_string(udp) + "-:53"));
  EXPECT_EQ(proc_net_bindings("tcp", tcp), std::vector<std::string>{std::string("0100007F:") + [&] {
              char hex[8];
              std::snprintf(hex, sizeof hex, "%04X", tcp);
              return std::string(hex);
            }()});
  const auto udp_bindings = proc_net_bindings("udp", udp);
  ASSERT_EQ(udp_bindings.size(), 1u);
  EXPECT_EQ(udp_bindings[0].substr(0, 8), "0100007F");
  EXPECT_TRUE(proc_net_bindings("tcp6", tcp).empty());
}

TEST_F(SlirpBackendTest, ATakenHostPortIsAnErrorThatNamesIt) {
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    UniqueFd taken = bound_socket(type);
    const std::string port = std::to_string(local_port(taken.get()));
    const std::string proto = type == SOCK_STREAM ? "tcp" : "udp";
    auto created = SlirpBackend::create(parse_user("user,hostfwd=" + proto + "::" + port + "-:22"), no_dns());
    ASSERT_FALSE(created.ok()) << proto;
    EXPECT_NE(created.error().message().find("127.0.0.1:" + port), std::string::npos) << created.error().message();
    EXPECT_NE(created.error().message().find("taken"), std::string::npos) << created.error().message();
  }
}

TEST_F(SlirpBackendTest, RestrictCutsTheGuestOffTheHostButForwardsStillWork) {
  UniqueFd server = bound_socket(SOCK_STREAM);
  const uint16_t forward = free_port(SOCK_STREAM);
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user,restrict=on,hostfwd=tcp::" + std::to_string(forward) + "-:8080"));

  GuestTcp blocked(*guest, kGateway, 40001, local_port(server.get()));
  auto reply = blocked.connect();
  EXPECT_TRUE(!reply.has_value() || (reply->tcp.flags & kTcpRst)) << "the guest reached the host's loopback";
  pollfd p{server.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 300), 0) << "a connection reached the loopback server";

  auto client = std::async(std::launch::async, [&] { return connect_tcp(forward); });
  auto syn = guest->wait_for([](const ParsedFrame& f) {
    return f.protocol == kProtocolTcp && f.destination_port == 8080 && (f.tcp.flags & kTcpSyn);
  });
  ASSERT_TRUE(syn.has_value()) << "the forward did not reach the guest";
  GuestTcp accepted(*guest, syn->source, 8080, syn->source_port);
  EXPECT_TRUE(accepted.accept(*syn));
  EXPECT_TRUE(client.get().valid());
}

TEST_F(SlirpBackendTest, AFloodFromTheGuestIsDroppedAtTheQueueAndCounted) {
  SlirpBackendLimits limits = no_dns();
  limits.transmit_queue_packets = 64;
  ASSERT_NO_FATAL_FAILURE(create("user", limits));  // no loop yet: nothing drains the queue
  const Bytes frame = icmp_echo_frame({guest->mac(), kBroadcastMac, kFirstLease, kGateway}, 1, 1, Bytes(64));
  size_t busy = 0;
  for (int i = 0; i < 1000; ++i) {
    auto sent = guest->send(frame);
    if (!sent.ok()) {
      EXPECT_EQ(sent.error().code(), ErrorCode::kBusy);
      ++busy;
    }
  }
  EXPECT_EQ(busy, 1000u - 64u);
  NetCounters c = *backend->counters();
  EXPECT_EQ(c.tx_packets, 64u);
  EXPECT_EQ(c.tx_dropped, 1000u - 64u);
  // Once the loop runs the queue drains and takes frames again.
  ASSERT_NO_FATAL_FAILURE(run_on_loop());
  for (int tries = 0; tries < 500 && !guest->send(frame).ok(); ++tries) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(backend->counters()->tx_packets, 65u);
}

TEST_F(SlirpBackendTest, AGuestThatNeverReadsLosesFramesNotMemory) {
  SlirpBackendLimits limits = no_dns();
  limits.receive_queue_packets = 32;
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user", limits));
  const size_t kPings = 400;
  for (uint16_t i = 0; i < kPings; ++i) {
    while (!guest->send(icmp_echo_frame(guest->to(kGateway), 9, i, Bytes(100))).ok()) std::this_thread::sleep_for(1ms);
  }
  // Every echo is answered; all but the queue's 32 frames are dropped.
  for (int tries = 0; tries < 500 && backend->counters()->rx_dropped < kPings - 32; ++tries)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(backend->receive_queue_size(), 32u);
  EXPECT_GE(backend->counters()->rx_dropped, kPings - 32);
  EXPECT_EQ(guest->drain(), 32u);
}

TEST_F(SlirpBackendTest, APartialChecksumIsFinishedAndOtherOffloadsAreRefused) {
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user"));
  Bytes frame = icmp_echo_frame(guest->to(kGateway), 5, 42, to_bytes("finish my checksum"));
  const size_t icmp = 14 + 20;
  frame[icmp + 2] = frame[icmp + 3] = 0;  // ICMP has no pseudo-header: the partial sum is 0

  VirtioNetHeader header{};
  header.flags = kHeaderNeedsCsum;
  header.csum_start = icmp;
  header.csum_offset = 2;
  const iovec packet[] = {{&header, sizeof header}, {frame.data(), frame.size()}};
  ASSERT_TRUE(backend->send(packet).ok());
  auto reply =
      guest->wait_for([](const ParsedFrame& f) { return f.protocol == kProtocolIcmp && f.icmp_sequence == 42; });
  ASSERT_TRUE(reply.has_value()) << "slirp dropped the frame: its checksum was not finished";

  VirtioNetHeader beyond = header;
  beyond.csum_start = static_cast<uint16_t>(frame.size() - 1);
  const iovec bad[] = {{&beyond, sizeof beyond}, {frame.data(), frame.size()}};
  EXPECT_EQ(backend->send(bad).error().code(), ErrorCode::kInvalidArgument);

  VirtioNetHeader udp_offload{};
  udp_offload.gso_type = kGsoUdp;
  udp_offload.gso_size = 1448;
  const iovec ufo[] = {{&udp_offload, sizeof udp_offload}, {frame.data(), frame.size()}};
  EXPECT_EQ(backend->send(ufo).error().code(), ErrorCode::kUnsupported);
  VirtioNetHeader tiny_mss{};
  tiny_mss.gso_type = kGsoTcpV4;
  tiny_mss.gso_size = 8;
  const iovec tiny[] = {{&tiny_mss, sizeof tiny_mss}, {frame.data(), frame.size()}};
  EXPECT_EQ(backend->send(tiny).error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(backend->counters()->tx_dropped, 3u);
}

TEST_F(SlirpBackendTest, ATsoSuperPacketReachesTheHostIntact) {
  UniqueFd server = bound_socket(SOCK_STREAM);
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user"));
  EXPECT_TRUE(backend->supports_offloads());
  const Bytes up = pattern(60'000, 4);
  auto host_side = std::async(std::launch::async, [&]() -> Bytes {
    UniqueFd connection = accept_within_5s(server.get());
    if (connection.get() < 0) return {};
    Bytes got;
    if (!read_exactly(connection.get(), got, up.size())) return {};
    return got;
  });
  GuestTcp tcp(*guest, kGateway, 40002, local_port(server.get()));
  auto syn_ack = tcp.connect();
  ASSERT_TRUE(syn_ack.has_value() && !(syn_ack->tcp.flags & kTcpRst));
  ASSERT_TRUE(tcp.send_super_packet(up, 1460));
  EXPECT_EQ(host_side.get(), up);
  EXPECT_EQ(backend->counters()->tx_dropped, 0u);
}

TEST_F(SlirpBackendTest, WithTheGuestsChecksumOffloadFramesAreMarkedValid) {
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user,ipv6=off"));
  auto next_header = [&]() -> std::optional<VirtioNetHeader> {
    pollfd p{backend->receive_fd(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return std::nullopt;
    std::vector<uint8_t> buffer(kMaxPacketSize);
    auto got = backend->receive(buffer);
    if (!got.ok() || !got->has_value()) return std::nullopt;
    VirtioNetHeader header;
    std::memcpy(&header, buffer.data(), sizeof header);
    return header;
  };
  ASSERT_TRUE(guest->send(icmp_echo_frame(guest->to(kGateway), 1, 1, Bytes(8))).ok());
  auto plain = next_header();
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->flags, 0);

  ReceiveOffloads offloads;
  offloads.csum = offloads.tso4 = true;
  ASSERT_TRUE(backend->set_receive_offloads(offloads).ok());
  ASSERT_TRUE(guest->send(icmp_echo_frame(guest->to(kGateway), 1, 2, Bytes(8))).ok());
  auto marked = next_header();
  ASSERT_TRUE(marked.has_value());
  EXPECT_EQ(marked->flags, kHeaderDataValid);
  EXPECT_EQ(marked->gso_type, kGsoNone);  // slirp never makes super-packets
}

// libslirp 4.7.0 crashes on this frame (fuzz/slirp_frames found it): a
// last fragment at a non-zero offset with nothing before it.
TEST_F(SlirpBackendTest, IpFragmentsNeverReachSlirp) {
  ASSERT_NO_FATAL_FAILURE(start_with_lease("user"));
  auto echo_with = [&](uint16_t flags_and_offset, uint16_t sequence) {
    Bytes frame = icmp_echo_frame(guest->to(kGateway), 3, sequence, to_bytes("fragment"));
    frame[20] = static_cast<uint8_t>(flags_and_offset >> 8);
    frame[21] = static_cast<uint8_t>(flags_and_offset);
    frame[24] = frame[25] = 0;
    const uint16_t sum = checksum_finish(checksum_add(std::span(frame).subspan(14, 20)));
    frame[24] = static_cast<uint8_t>(sum >> 8);
    frame[25] = static_cast<uint8_t>(sum);
    return frame;
  };
  for (uint16_t flags_and_offset : {0x0001, 0x2000, 0x2001})
    EXPECT_EQ(guest->send(echo_with(flags_and_offset, 1)).error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(backend->counters()->tx_dropped, 3u);
  // Don't-fragment alone is not a fragment, and the NAT is still alive.
  ASSERT_TRUE(guest->send(echo_with(0x4000, 2)).ok());
  EXPECT_TRUE(guest->wait_for([](const ParsedFrame& f) { return f.protocol == kProtocolIcmp && f.icmp_sequence == 2; })
                  .has_value());
}

}  // namespace
}  // namespace hostvisor::net
