// bench_net: how many packets per second the user-mode NAT's VMM side moves
// and what each costs in CPU, without a guest. A driver thread plays the
// guest and its virtio-net (send() and receive() as the device calls them);
// the backend runs on an EventLoop thread as in a VM. Workloads:
//   echo  ICMP echo to the gateway, answered inside slirp: the per-frame
//         cost of the backend's queues, the loop's pass and slirp's input
//         and output, with up to `window` requests in flight;
//   udp   UDP datagrams from the guest to a sink socket on 127.0.0.1
//         (reached at the gateway address): adds slirp's socket send.
// And the tap's VMM side (--tap-mib, in a network namespace the bench makes
// for itself, as root or in a user namespace):
//   tap   one TCP stream of 64 KiB TSO super-packets from the driver's
//         transmit virtqueue through VirtioNet (which hands the tap the
//         guest's buffers) into a tap, whose host kernel delivers them to a
//         socket read by a thread; the driver keeps to the host's receive
//         window by reading its ACKs from the tap. Gbit/s of stream data and
//         the process's CPU (driver, device, tap writes with the kernel's
//         receive work they run, the reading thread) in cores.
#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "devices/virtio/net/virtio_net.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"
#include "net/host_interface/link_control.h"
#include "net/slirp/slirp_backend.h"
#include "net/tap/tap_backend.h"
#include "net/testing/private_network_namespace.h"
#include "net/testing/test_guest.h"
#include "vmm/event_loop.h"

using namespace hostvisor;
using namespace hostvisor::net;
using namespace hostvisor::net::testing;

namespace {

constexpr Ipv4Address kGateway{0x0a000202};

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

struct Figures {
  double packets_per_second = 0;
  double cpu_us_per_packet = 0;
};

struct Nat {
  std::unique_ptr<SlirpBackend> backend;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<TestGuest> guest;

  static Nat start() {
    UserNetOption option;
    option.ipv6 = false;  // no router advertisements in the figures
    SlirpBackendLimits limits;
    limits.forward_dns = false;
    Nat nat;
    nat.backend = SlirpBackend::create(option, limits).value();
    nat.loop = EventLoop::create().value();
    (void)nat.loop->add(nat.backend->service_fd(), [b = nat.backend.get()](uint32_t) { b->service(); });
    nat.loop->start();
    nat.guest = std::make_unique<TestGuest>(*nat.backend);
    if (!nat.guest->lease().ok()) {
      std::fprintf(stderr, "bench_net: no DHCP lease from the NAT\n");
      std::exit(1);
    }
    return nat;
  }
  ~Nat() {
    if (loop) {
      loop->stop();
      loop->remove(backend->service_fd());
    }
  }
  Nat() = default;
  Nat(Nat&&) = default;
};

// ICMP echo round trips to the gateway, `window` in flight.
Figures echo(size_t packets, size_t window) {
  Nat nat = Nat::start();
  const Bytes data(56);
  std::vector<Bytes> frames;
  for (uint16_t i = 0; i < 1024; ++i) frames.push_back(icmp_echo_frame(nat.guest->to(kGateway), 1, i, data));
  std::vector<uint8_t> buffer(kMaxPacketSize);
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  size_t sent = 0, answered = 0;
  while (answered < packets) {
    while (sent < packets && sent - answered < window && nat.guest->send(frames[sent % frames.size()]).ok()) ++sent;
    auto got = nat.backend->receive(buffer);
    if (got.ok() && got->has_value()) {
      if (**got != kVnetHeaderSize + frames[0].size()) {
        std::fprintf(stderr, "bench_net: echo: a %zu-byte packet is not an echo reply\n", **got);
        std::exit(1);
      }
      ++answered;
    } else if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(60)) {
      std::fprintf(stderr, "bench_net: echo stalled at %zu of %zu\n", answered, packets);
      std::exit(1);
    } else {
      std::this_thread::yield();
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {static_cast<double>(packets) / seconds, (cpu_seconds() - cpu0) * 1e6 / static_cast<double>(packets)};
}

// UDP datagrams to a sink on 127.0.0.1; counts what the sink received.
Figures udp(size_t packets, size_t window) {
  UniqueFd sink(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int buffer_size = 8 << 20;
  ::setsockopt(sink.get(), SOL_SOCKET, SO_RCVBUF, &buffer_size, sizeof buffer_size);
  ::bind(sink.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(sink.get(), reinterpret_cast<sockaddr*>(&address), &length);
  const uint16_t port = ntohs(address.sin_port);

  Nat nat = Nat::start();
  const Bytes frame = udp_frame(nat.guest->to(kGateway), 40000, port, Bytes(1024));
  std::atomic<size_t> received{0};
  std::thread reader([&] {
    timeval timeout{2, 0};
    ::setsockopt(sink.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char buffer[2048];
    while (received<packets&& ::recv(sink.get(), buffer, sizeof buffer, 0)> 0) ++received;
  });
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t sent = 0; sent < packets;) {
    if (sent - received < window && nat.guest->send(frame).ok())
      ++sent;
    else
      std::this_thread::yield();
  }
  reader.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (received < packets)
    std::fprintf(stderr, "bench_net: udp: the sink got %zu of %zu datagrams\n", received.load(), packets);
  return {static_cast<double>(received) / seconds, (cpu_seconds() - cpu0) * 1e6 / static_cast<double>(received)};
}

// --- the tap's VMM side

namespace tap {

constexpr Ipv4Address kHost{0x0a4d0001}, kGuest{0x0a4d0002};  // 10.77.0.1, 10.77.0.2 on the tap
constexpr uint16_t kHostPort = 5001;
// The guest's port: a new one each run, as the last run's connection may
// still be in TIME_WAIT on the host.
uint16_t guest_port = 40000;
constexpr uint16_t kMss = 1448;
constexpr size_t kPayload = 45 * kMss;  // 65160: a 64 KiB super-packet, cut by the host at 1448
constexpr size_t kHeaders = 14 + 20 + 20;
constexpr uint32_t kIsn = 0x1000;
constexpr uint16_t kQueueSize = 256;
constexpr size_t kBatch = 64;  // chains per notify; 3 descriptors each
constexpr uint64_t kTxRing = 0x1000, kRxRing = 0x10000, kSlots = 0x100000, kSlotSize = 0x10000;
const MacAddress kGuestMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "bench_net: tap: %s\n", why.c_str());
  std::exit(1);
}

template <typename T>
T need(Result<T> result, const char* what) {
  if (!result) fail(std::string(what) + ": " + result.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(result).value();
}

MacAddress interface_mac(const std::string& name) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq req{};
  std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFHWADDR, &req) != 0) fail("reading the tap's MAC");
  MacAddress mac;
  std::memcpy(mac.data(), req.ifr_hwaddr.sa_data, 6);
  return mac;
}

// A permanent neighbour entry for the guest, so the host never ARPs for it.
void add_static_arp(const std::string& name) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  arpreq req{};
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(kGuest.value);
  std::memcpy(&req.arp_pa, &address, sizeof address);
  req.arp_ha.sa_family = ARPHRD_ETHER;
  std::memcpy(req.arp_ha.sa_data, kGuestMac.data(), 6);
  req.arp_flags = ATF_PERM | ATF_COM;
  std::strncpy(req.arp_dev, name.c_str(), sizeof req.arp_dev - 1);
  if (::ioctl(sock.get(), SIOCSARP, &req) != 0) fail(std::string("adding the guest's ARP entry: ") + strerror(errno));
}

// The host's TCP segments to the guest, read straight off the tap.
struct HostSegment {
  uint32_t ack = 0;
  uint32_t window = 0;
  uint8_t flags = 0;
  std::optional<uint8_t> window_scale;
};
std::optional<HostSegment> parse_host_segment(std::span<const uint8_t> packet) {
  if (packet.size() < kVnetHeaderSize + kHeaders) return std::nullopt;
  const uint8_t* f = packet.data() + kVnetHeaderSize;
  if (f[12] != 0x08 || f[13] != 0x00 || (f[14] & 0x0f) != 5 || f[23] != kProtocolTcp) return std::nullopt;
  const uint8_t* t = f + 34;
  if (((t[2] << 8) | t[3]) != guest_port) return std::nullopt;
  HostSegment s;
  s.ack = (uint32_t{t[8]} << 24) | (uint32_t{t[9]} << 16) | (uint32_t{t[10]} << 8) | t[11];
  s.flags = t[13];
  s.window = (uint32_t{t[14]} << 8) | t[15];
  const size_t length = static_cast<size_t>(t[12] >> 4) * 4;
  if (length < 20 || 34 + length > packet.size() - kVnetHeaderSize) return std::nullopt;
  for (size_t at = 20; at < length;) {
    if (t[at] == 0) break;
    if (t[at] == 1) {
      ++at;
      continue;
    }
    if (at + 1 >= length || t[at + 1] < 2) break;
    if (t[at] == 3 && t[at + 1] == 3 && at + 2 < length) s.window_scale = t[at + 2];
    at += t[at + 1];
  }
  return s;
}

struct Figures {
  double gbits_per_second = 0;
  double cores = 0;
  uint64_t dropped = 0;
};

Figures stream(uint64_t total) {
  ++guest_port;
  const std::string ifname = "hvbench0";
  auto owned = need(TapBackend::open(ifname), "opening the tap");
  TapBackend* tap = owned.get();
  need(set_ipv4_address(ifname, kHost, Ipv4Network{{0x0a4d0000}, 24}), "addressing the tap");
  need(set_link_up(ifname), "bringing the tap up");
  add_static_arp(ifname);
  const MacAddress host_mac = interface_mac(ifname);
  const Endpoints endpoints{kGuestMac, host_mac, kGuest, kHost};

  // The host's end: a socket a thread reads to the end.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(kHost.value);
  address.sin_port = htons(kHostPort);
  const int reuse = 1;  // the previous run's connection may still be in TIME_WAIT
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener.get(), 1) != 0)
    fail("listening on the tap's address");
  std::atomic<uint64_t> received{0};
  std::thread reader([&] {
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::vector<uint8_t> buffer(1 << 20);
    for (ssize_t n; received < total && (n = ::read(conn.get(), buffer.data(), buffer.size())) > 0;) received += n;
  });

  // The handshake, straight on the tap (the device is not reading it yet).
  std::vector<uint8_t> packet(kMaxPacketSize);
  auto send_raw = [&](const Bytes& frame) {
    std::vector<uint8_t> bytes(kVnetHeaderSize);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    const iovec iov{bytes.data(), bytes.size()};
    need(tap->send({&iov, 1}), "sending on the tap");
  };
  auto next_segment = [&](int timeout_ms) -> std::optional<HostSegment> {
    for (;;) {
      auto got = need(tap->receive(packet), "reading the tap");
      if (!got) {
        pollfd p{tap->receive_fd(), POLLIN, 0};
        if (timeout_ms == 0 || ::poll(&p, 1, timeout_ms) != 1) return std::nullopt;
        continue;
      }
      if (auto segment = parse_host_segment(std::span(packet).first(*got))) return segment;
    }
  };
  TcpSegment syn{guest_port, kHostPort, kIsn, 0, kTcpSyn, 65535, 1460, 7, {}};
  send_raw(tcp_frame(endpoints, syn));
  const auto syn_ack = next_segment(2000);
  if (!syn_ack || (syn_ack->flags & (kTcpSyn | kTcpAck)) != (kTcpSyn | kTcpAck)) fail("no SYN-ACK from the host");
  // The host's ISN is what it acknowledges back once we ACK; read it from the frame.
  const uint32_t host_isn = (uint32_t{packet[kVnetHeaderSize + 38]} << 24) |
                            (uint32_t{packet[kVnetHeaderSize + 39]} << 16) |
                            (uint32_t{packet[kVnetHeaderSize + 40]} << 8) | packet[kVnetHeaderSize + 41];
  const unsigned shift = syn_ack->window_scale.value_or(0);
  uint64_t window = syn_ack->window;  // unscaled in a SYN
  send_raw(tcp_frame(endpoints, {guest_port, kHostPort, kIsn + 1, host_isn + 1, kTcpAck, 65535 >> 7, {}, {}, {}}));

  // The guest: RAM, the two queues, the NIC on the tap with every offload.
  GuestMemory memory = need(GuestMemory::create({{GuestAddress(0), 16 << 20}}), "guest RAM");
  VirtioNetOptions options;
  options.mac = kGuestMac;
  options.queue_size = kQueueSize;
  VirtioNet device(std::move(owned), options);
  hostvisor::testing::VirtqueueTestDriver tx(memory, kQueueSize, kTxRing), rx(memory, kQueueSize, kRxRing);
  const uint64_t features = device.device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
  Virtqueue queues[2] = {need(Virtqueue::create(memory, rx.layout(), features), "rx queue"),
                         need(Virtqueue::create(memory, tx.layout(), features), "tx queue")};
  bool enabled[2] = {true, true};
  hostvisor::testing::RecordingVirtioInterrupt interrupt;
  need(device.activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}), "activating virtio-net");

  // One template super-packet per slot: the device's header, then the
  // frame (its TCP checksum partial, as a guest's stack leaves it).
  TcpSegment data{guest_port, kHostPort, 0, host_isn + 1, kTcpAck, 65535, {}, {}, Bytes(kPayload, 0x5a)};
  const Bytes frame = tcp_frame(endpoints, data);
  const VirtioNetHeader header = tso4_header(kMss);
  for (size_t slot = 0; slot < kBatch; ++slot) {
    const uint64_t at = kSlots + slot * kSlotSize;
    need(memory.write_obj(GuestAddress(at), header), "writing a header");
    need(memory.write(GuestAddress(at + kVnetHeaderSize), frame), "writing a frame");
  }

  const uint32_t base = kIsn + 1;
  uint64_t sent = 0, acked = 0;
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  auto last_progress = t0;
  uint16_t next_descriptor = 0;
  while (acked < total) {
    size_t batch = 0;
    // Within the host's receive window; with nothing in flight one
    // super-packet goes anyway (the window after the handshake is under
    // 64 KiB until the host's receive buffer grows), as a guest's TCP does.
    while (batch < kBatch && sent < total && (sent == acked || sent + kPayload - acked <= window)) {
      const uint64_t at = kSlots + batch * kSlotSize;
      need(memory.write_obj<uint32_t>(GuestAddress(at + kVnetHeaderSize + 38),
                                      htonl(base + static_cast<uint32_t>(sent))),
           "writing a sequence number");
      tx.add_chain(next_descriptor, {{at, kVnetHeaderSize, false},
                                     {at + kVnetHeaderSize, kHeaders, false},
                                     {at + kVnetHeaderSize + kHeaders, kPayload, false}});
      next_descriptor = static_cast<uint16_t>((next_descriptor + 3) % kQueueSize);
      sent += kPayload;
      ++batch;
    }
    if (batch) need(device.process_queue(1), "notifying the transmit queue");
    bool progress = batch > 0;
    while (auto segment = next_segment(progress ? 0 : 100)) {
      const uint64_t now_acked = segment->ack - base;  // the stream is under 4 GiB
      if (now_acked > acked && now_acked <= sent) acked = now_acked;
      window = uint64_t{segment->window} << shift;
      progress = true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (progress) last_progress = now;
    if (now - last_progress > std::chrono::seconds(10))
      fail("stalled at " + std::to_string(acked) + " of " + std::to_string(total) + " bytes acknowledged");
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  reader.join();
  if (received < total) fail("the host's socket read " + std::to_string(received) + " bytes");
  if (!interrupt.needs_reset.empty()) fail("the device failed: " + interrupt.needs_reset[0]);
  return {static_cast<double>(total) * 8 / seconds / 1e9, cpu / seconds, device.stats().tx_dropped};
}

}  // namespace tap

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_net: the user-mode NAT's VMM side without a guest"};
  size_t packets = 200'000, window = 64;
  unsigned repeat = 3;
  uint64_t tap_mib = 1024;
  app.add_option("--packets", packets, "packets per workload");
  app.add_option("--tap-mib", tap_mib, "MiB of TCP stream through the tap (0: no tap workload)");
  app.add_option("--window", window, "packets in flight");
  app.add_option("--repeat", repeat, "runs per workload; the best is printed");
  CLI11_PARSE(app, argc, argv);

  // The tap workload's namespace, before any thread starts; the NAT's
  // loopback traffic is as well off in it.
  std::optional<std::string> no_tap;
  if (tap_mib > 0) {
    if (auto netns = net::testing::enter_private_network_namespace(); !netns)
      no_tap = "no network namespace for the tap: " + netns.error().message();
  }

  for (const auto& [name, run] : {std::pair{"echo", &echo}, std::pair{"udp", &udp}}) {
    Figures best;
    for (unsigned i = 0; i < repeat; ++i) {
      const Figures f = run(packets, window);
      if (f.packets_per_second > best.packets_per_second) best = f;
    }
    std::printf("%-5s %10.0f packets/s  %6.2f us CPU/packet (driver + loop + libslirp + sink)\n", name,
                best.packets_per_second, best.cpu_us_per_packet);
  }
  if (tap_mib == 0) return 0;
  if (no_tap) {
    std::printf("tap   not measured: %s\n", no_tap->c_str());
    return 1;
  }
  tap::Figures best;
  for (unsigned i = 0; i < repeat; ++i) {
    const tap::Figures f = tap::stream(tap_mib << 20);
    if (f.gbits_per_second > best.gbits_per_second) best = f;
  }
  std::printf(
      "tap   %10.2f Gbit/s of TCP in 64 KiB TSO frames, %.2f cores busy (%.2f Gbit/s per core; target >= 5), "
      "%llu dropped\n",
      best.gbits_per_second, best.cores, best.gbits_per_second / std::max(best.cores, 0.01),
      static_cast<unsigned long long>(best.dropped));
  return 0;
}
