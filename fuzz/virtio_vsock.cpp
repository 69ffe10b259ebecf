// virtio-vsock's queues on hostile guest memory: random descriptor tables
// and rings for the rx, tx and event queues, so tx packets of any header,
// op, CID, port and length, and rx buffers of any shape. A host listener at
// PATH_1 accepts the guest's connections to port 1, so streams get
// established and carry data; host sockets are read and closed between
// inputs. The device must answer (RST), forward or mark itself needs-reset,
// and never crash, touch memory outside guest RAM or buffer more than its
// credit. The input's first bytes also go through the CONNECT line parser.
//
// Input: [0] log2 rx queue size (mod 9), [1] log2 tx queue size (mod 9),
// [2] bits: 1 INDIRECT_DESC, 2 EVENT_IDX, 4 restore first (a TRANSPORT_RESET
// is due), 8 the host program writes to its streams; the rest is guest RAM:
// rx queue at 0 (driver area 0x1000, device area 0x2000), tx at 0x3000
// (0x4000, 0x5000), event queue at 0x6000 (0x7000, 0x8000), size 4, and
// buffers anywhere in the 64 KiB.
#include "devices/virtio/vsock/virtio_vsock.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/virtio_constants.h"
#include "devices/virtio/vsock/vsock_connect_line.h"
#include "devices/virtio/vsock/vsock_unix_socket.h"
#include "fuzz/fuzz_input.h"

using namespace hostvisor;

namespace {

constexpr uint64_t kRamSize = 64 * 1024;

struct Fixture {
  std::string dir;
  std::shared_ptr<VirtioVsock> device;
  UniqueFd port1;  // the host program's listener for guest port -> host port 1
  Fixture() {
    char tmpl[] = "/tmp/hv-fuzz-vsock-XXXXXX";
    if (!::mkdtemp(tmpl)) std::abort();
    dir = tmpl;
    device = std::move(VirtioVsock::create({3, dir + "/v.sock", 256})).value();
    port1 = std::move(vsock::listen_unix(dir + "/v.sock_1")).value();
  }
};

void check_connect_line(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), std::min<size_t>(size, 40));
  auto line = vsock::parse_connect_line(text);
  if (line && line->has_value()) {
    const auto& parsed = **line;
    if (parsed.length > text.size() || text[parsed.length - 1] != '\n') __builtin_trap();
    if (text.substr(0, 8) != "CONNECT ") __builtin_trap();
  }
  if (!line && text.find('\n') == std::string_view::npos && text.size() < vsock::kMaxConnectLine) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture fixture;
  static GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), kRamSize}})).value();
  check_connect_line(data, size);
  VirtioVsock& device = *fixture.device;

  const uint8_t log2_rx = hostvisor::fuzz::take<uint8_t>(data, size);
  const uint8_t log2_tx = hostvisor::fuzz::take<uint8_t>(data, size);
  const uint8_t bits = hostvisor::fuzz::take<uint8_t>(data, size);
  (void)memory.fill(GuestAddress(0), 0, kRamSize);
  (void)memory.write(GuestAddress(0), std::span(data, size < kRamSize ? size : kRamSize));

  if (bits & 4) {
    StateWriter out;
    VirtioVsock::encode_state(out, {3});
    const auto bytes = out.take();
    StateReader in(bytes, "fuzz");
    if (!device.restore_state(in, VirtioVsock::kStateVersion)) __builtin_trap();
  }
  uint64_t features = virtio::feature_bit(virtio::kFeatureVersion1);
  if (bits & 1) features |= virtio::feature_bit(virtio::kFeatureIndirectDesc);
  if (bits & 2) features |= virtio::feature_bit(virtio::kFeatureEventIdx);
  const VirtqueueLayout layouts[3] = {
      {static_cast<uint16_t>(1u << (log2_rx % 9)), GuestAddress(0x0), GuestAddress(0x1000), GuestAddress(0x2000)},
      {static_cast<uint16_t>(1u << (log2_tx % 9)), GuestAddress(0x3000), GuestAddress(0x4000), GuestAddress(0x5000)},
      {4, GuestAddress(0x6000), GuestAddress(0x7000), GuestAddress(0x8000)}};
  Virtqueue queues[3];
  for (int q = 0; q < 3; ++q) {
    auto queue = Virtqueue::create(memory, layouts[q], features);
    if (!queue) __builtin_trap();  // fixed, valid layouts
    queues[q] = std::move(queue).value();
  }
  bool enabled[3] = {true, true, true};
  testing::RecordingVirtioInterrupt interrupt;
  if (!device.activate(VirtioActivation{&memory, features, queues, enabled, &interrupt})) __builtin_trap();

  std::vector<UniqueFd> accepted;
  for (int round = 0; round < 3; ++round) {
    if (!device.process_queue(virtio_vsock::kTxQueue)) __builtin_trap();
    if (!device.process_queue(virtio_vsock::kRxQueue)) __builtin_trap();
    if (!device.process_queue(virtio_vsock::kEventQueue)) __builtin_trap();
    // The host program takes the guest's connections and, if asked, talks back.
    for (int fd; (fd = ::accept4(fixture.port1.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
      accepted.emplace_back(fd);
      if (bits & 8) (void)!::send(fd, "host bytes", 10, MSG_NOSIGNAL);
    }
    device.process_host();
    pollfd rescheduled{device.reschedule_fd(), POLLIN, 0};
    if (::poll(&rescheduled, 1, 0) == 1) device.run_rescheduled();
    if (device.stream_count() > VirtioVsock::kMaxStreams) __builtin_trap();
  }
  uint8_t config[16];
  device.read_config(bits % 12, config);
  device.reset();
  if (device.stream_count() != 0) __builtin_trap();
  return 0;
}
