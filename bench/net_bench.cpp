// bench_net: how many packets per second the user-mode NAT's VMM side moves
// and what each costs in CPU, without a guest. A driver thread plays the
// guest and its virtio-net (send() and receive() as the device calls them);
// the backend runs on an EventLoop thread as in a VM. Workloads:
//   echo  ICMP echo to the gateway, answered inside slirp: the per-frame
//         cost of the backend's queues, the loop's pass and slirp's input
//         and output, with up to `window` requests in flight;
//   udp   UDP datagrams from the guest to a sink socket on 127.0.0.1
//         (reached at the gateway address): adds slirp's socket send.
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "net/slirp/slirp_backend.h"
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_net: the user-mode NAT's VMM side without a guest"};
  size_t packets = 200'000, window = 64;
  unsigned repeat = 3;
  app.add_option("--packets", packets, "packets per workload");
  app.add_option("--window", window, "packets in flight");
  app.add_option("--repeat", repeat, "runs per workload; the best is printed");
  CLI11_PARSE(app, argc, argv);

  for (const auto& [name, run] : {std::pair{"echo", &echo}, std::pair{"udp", &udp}}) {
    Figures best;
    for (unsigned i = 0; i < repeat; ++i) {
      const Figures f = run(packets, window);
      if (f.packets_per_second > best.packets_per_second) best = f;
    }
    std::printf("%-5s %10.0f packets/s  %6.2f us CPU/packet (driver + loop + libslirp + sink)\n", name,
                best.packets_per_second, best.cpu_us_per_packet);
  }
  return 0;
}
