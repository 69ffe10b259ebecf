// bench_net_switch: the VMM side of an internal network without guests.
// A driver thread plays two guests' virtio drivers: it puts 64 KiB TSO
// frames (one header, 65,160 bytes of TCP payload, gso_size 1448) on the
// transmit queue of VM A's virtio-net, whose backend is a switch port; the
// switch (its server loop on a thread of its own, as in the switch process)
// forwards them to VM B's port, and B's virtio-net writes them into the
// receive buffers the driver posted. Both NICs negotiated checksum and TSO
// offloads, so frames cross whole. Prints Gbit/s of TCP payload and the
// CPU the whole process (driver, both devices, both backends, the switch)
// spent per GB.
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "devices/virtio/net/virtio_net.h"
#include "devices/virtio/net/virtio_net_spec.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"
#include "net/switch/switch_port_backend.h"
#include "net/switch/switch_server.h"
#include "net/testing/frames.h"

using namespace hostvisor;
using namespace hostvisor::net;
using namespace hostvisor::net::testing;
using hostvisor::testing::RecordingVirtioInterrupt;
using hostvisor::testing::VirtqueueTestDriver;

namespace {

constexpr uint16_t kQueueSize = 64;
constexpr uint64_t kRam = 64 << 20;
constexpr uint64_t kTxRing = 0x10000, kRxRing = 0x20000;
constexpr uint64_t kTxBuffers = 0x100000, kRxBuffers = 0x1000000, kSlot = 0x11000;
constexpr size_t kPayload = 45 * 1448;  // 65,160 bytes: 45 full segments

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return {};
  return fd;
}

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "bench_net_switch: %s\n", why.c_str());
  std::exit(1);
}

// One VM's NIC: the device, its queues in its own guest memory, its driver.
struct Nic {
  GuestMemory memory;
  std::shared_ptr<VirtioNet> device;
  std::unique_ptr<VirtqueueTestDriver> rx, tx;
  Virtqueue queues[2];
  bool enabled[2] = {true, true};
  RecordingVirtioInterrupt interrupt;
  NetBackend* backend = nullptr;

  Nic(std::unique_ptr<SwitchPortBackend> port, uint8_t id)
      : memory(std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value()) {
    backend = port.get();
    VirtioNetOptions options;
    options.queue_size = kQueueSize;
    options.mac = {0x02, 0, 0, 0, 0, id};
    device = std::make_shared<VirtioNet>(std::move(port), options);
    device->set_backend_interest_callback([](bool) {});
    rx = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRxRing);
    tx = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kTxRing);
    const uint64_t features = device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    queues[0] = std::move(Virtqueue::create(memory, rx->layout(), features)).value();
    queues[1] = std::move(Virtqueue::create(memory, tx->layout(), features)).value();
    if (!device->activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok())
      die("activating virtio-net");
  }
};

struct Figures {
  double gbit_per_second = 0;
  double cpu_seconds_per_gb = 0;
};

Figures run(size_t frames) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("hv-bench-switch-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  SwitchServerOptions options;
  options.socket_path = (dir / "bench.sock").string();
  auto server = SwitchServer::create(options);
  if (!server.ok()) die(server.error().message());
  std::thread loop([&] { (void)(*server)->run(); });

  auto port = [&](uint8_t id) {
    auto backend = SwitchPortBackend::open(connect_unix(options.socket_path), {"bench", {0x02, 0, 0, 0, 0, id}, {}});
    if (!backend.ok()) die(backend.error().message());
    return std::move(backend).value();
  };
  Nic a(port(0xa), 0xa), b(port(0xb), 0xb);

  // A learns where A is from one small frame the other way, so A's TSO
  // frames go to B alone (otherwise they would be flooded, which is the same
  // here with two ports, but not the common case).
  TcpSegment s;
  s.source_port = 40000;
  s.destination_port = 5001;
  s.flags = kTcpAck;
  s.payload.resize(kPayload, 0x5a);
  const Endpoints path{{0x02, 0, 0, 0, 0, 0xa}, {0x02, 0, 0, 0, 0, 0xb}, {0x0a4d0002}, {0x0a4d0003}};
  const Bytes frame = tcp_frame(path, s);
  const VirtioNetHeader header = tso4_header();
  // A few transmit buffers, reused: header + frame in one descriptor pair.
  constexpr uint16_t kTxSlots = kQueueSize / 2;
  for (uint16_t i = 0; i < kTxSlots; ++i) {
    (void)a.memory.write(GuestAddress(kTxBuffers + kSlot * i),
                         std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&header), sizeof header));
    (void)a.memory.write(GuestAddress(kTxBuffers + kSlot * i + sizeof header), frame);
  }
  // B's receive buffers, each big enough for a whole 64 KiB packet.
  uint16_t rx_posted = 0;
  auto post_rx = [&] {
    while (static_cast<uint16_t>(rx_posted - b.rx->used_idx()) < kQueueSize) {
      const uint16_t slot = rx_posted % kQueueSize;
      b.rx->add_chain(slot, {{kRxBuffers + kSlot * slot, static_cast<uint32_t>(kSlot), true}});
      ++rx_posted;
    }
    (void)b.device->process_queue(0);
  };
  post_rx();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // B's offloads reach the switch

  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  size_t sent = 0;
  uint16_t tx_head = 0;
  uint64_t received_bytes = 0, received_frames = 0;
  const uint64_t wanted = static_cast<uint64_t>(frames) * kPayload;
  // A frame the switch or a full socket dropped does not come (a guest's TCP
  // would send it again): the run ends when everything was sent and nothing
  // more arrived for 200 ms, and the drops are reported.
  auto last_arrival = std::chrono::steady_clock::now();
  while (received_bytes < wanted &&
         (sent < frames || std::chrono::steady_clock::now() - last_arrival < std::chrono::milliseconds(200))) {
    // Transmit: as many chains as the ring has room for, then one notify.
    while (sent < frames && static_cast<uint16_t>(tx_head - a.tx->used_idx()) < kTxSlots) {
      const uint16_t slot = tx_head % kTxSlots;
      const uint64_t at = kTxBuffers + kSlot * slot;
      a.tx->add_chain(static_cast<uint16_t>(2 * slot),
                      {{at, sizeof header, false}, {at + sizeof header, static_cast<uint32_t>(frame.size()), false}});
      ++tx_head;
      ++sent;
    }
    (void)a.device->process_queue(1);
    a.backend->service();  // what the socket did not take yet
    // Receive: whatever B's socket has, into the posted buffers.
    const uint16_t before = b.rx->used_idx();
    pollfd p{b.device->backend_fd(), POLLIN, 0};
    if (::poll(&p, 1, 1) > 0) b.device->process_backend();
    for (uint16_t i = before; i != b.rx->used_idx(); ++i) {
      received_bytes += b.rx->used(i).len - kVnetHeaderSize - (frame.size() - kPayload);
      ++received_frames;
      last_arrival = std::chrono::steady_clock::now();
    }
    post_rx();
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(60))
      die("stalled: " + std::to_string(sent) + " frames sent, " + std::to_string(a.tx->used_idx()) + " taken, " +
          std::to_string(received_bytes) + " bytes received; A " + format_net_counters(*a.backend->counters()) +
          "; B " + format_net_counters(*b.backend->counters()) + "; device A " +
          VirtioNet::format_stats(a.device->stats()) + "; device B " + VirtioNet::format_stats(b.device->stats()));
  }
  const double seconds = std::chrono::duration<double>(last_arrival - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  if (received_frames < frames)
    std::fprintf(stderr, "bench_net_switch: %zu of %zu frames dropped on the way (full queues)\n",
                 frames - static_cast<size_t>(received_frames), frames);
  (*server)->stop();
  loop.join();
  std::filesystem::remove_all(dir);
  const double gb = static_cast<double>(received_bytes) / 1e9;
  return {gb * 8 / seconds, cpu / gb};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_net_switch: 64 KiB TSO frames through virtio-net, two switch ports and the switch"};
  size_t frames = 100'000;
  unsigned repeat = 3;
  app.add_option("--frames", frames, "64 KiB frames per run");
  app.add_option("--repeat", repeat, "runs; the best is printed");
  CLI11_PARSE(app, argc, argv);
  Figures best;
  for (unsigned i = 0; i < repeat; ++i) {
    const Figures f = run(frames);
    if (f.gbit_per_second > best.gbit_per_second) best = f;
  }
  // Per core: what one CPU-second of the whole path (driver, both devices
  // and backends, the switch) moves, the "5 Gbit/s on one core".
  std::printf(
      "switch  %8.2f Gbit/s TCP payload  %6.3f CPU-s/GB = %.2f Gbit/s per core  (64 KiB TSO frames: virtio-net "
      "tx -> port -> switch -> port -> virtio-net rx, unsegmented)\n",
      best.gbit_per_second, best.cpu_seconds_per_gb, 8 / best.cpu_seconds_per_gb);
  return 0;
}
