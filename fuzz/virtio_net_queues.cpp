// virtio-net's queue handling on hostile guest memory: random descriptor
// tables and rings for the receive and transmit queues, transmit packets of
// any length and header, and a backend that hands the device packets of any
// length (cut ones included) with any header. The device must deliver, drop
// and count, or mark itself needs-reset, and never crash, read or write
// outside guest RAM, hand the backend a packet it should have refused, or
// hold more than one packet ahead of the guest.
//
// Input: [0] log2 receive queue size (mod 9), [1] log2 transmit queue size
// (mod 9), [2] bits: 1 INDIRECT_DESC, 2 EVENT_IDX, 4 mergeable buffers, 8 a
// backend with offloads, 16 the driver refuses GUEST_CSUM, 32 CSUM refused,
// 64 a rate limit of 64 KiB/s on a clock that moves 1 ms a round, 128 a backend
// that reads packets straight into the guest's buffers; [3] how
// many packets the backend has (mod 16), then per packet a little-endian
// uint16 length, a header flags byte and a gso_type byte; the rest is guest
// RAM: receive queue at 0 (driver area 0x1000, device area 0x2000), transmit
// queue at 0x3000 (0x4000, 0x5000), buffers anywhere in the 64 KiB.
#include <poll.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtio/net/virtio_net.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/virtio_constants.h"
#include "fuzz/fuzz_input.h"

using namespace hostvisor;

namespace {

constexpr uint64_t kRamSize = 64 * 1024;

struct ScriptedPacket {
  uint16_t length;
  uint8_t flags;
  uint8_t gso_type;
};

class ScriptedBackend : public net::NetBackend {
 public:
  ScriptedBackend(std::vector<ScriptedPacket> packets, bool offloads, bool in_place, const uint8_t* ram)
      : packets_(std::move(packets)), offloads_(offloads), in_place_(in_place), ram_(ram) {}

  std::string_view name() const override { return "scripted"; }
  Result<void> send(std::span<const iovec> packet) override {
    size_t length = 0;
    for (const iovec& v : packet) length += v.iov_len;
    // The device drops runts and oversized packets itself.
    if (length < net::kVnetHeaderSize + 14 || length > net::kMaxPacketSize) __builtin_trap();
    net::VirtioNetHeader header;
    if (packet.empty() || packet[0].iov_len < sizeof header) __builtin_trap();
    std::memcpy(&header, packet[0].iov_base, sizeof header);
    // Without offloads every header is plain.
    if (!offloads_ && (header.flags != 0 || header.gso_type != net::kGsoNone)) __builtin_trap();
    ++sent;
    // Every fourth send fails, as a congested host does.
    if (sent % 4 == 0) return Error(ErrorCode::kBusy, "scripted: congested");
    return ok();
  }
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override {
    const iovec whole{buffer.data(), buffer.size()};
    return scatter({&whole, 1});
  }
  bool receives_in_place() const override { return in_place_; }
  Result<std::optional<size_t>> receive_in_place(std::span<const iovec> buffers) override {
    if (!in_place_ || buffers.empty() || buffers[0].iov_len != sizeof(net::VirtioNetHeader)) __builtin_trap();
    // The header goes to the device; every other piece must be guest RAM.
    for (const iovec& part : buffers.subspan(1)) {
      const auto* at = static_cast<const uint8_t*>(part.iov_base);
      if (at < ram_ || at + part.iov_len > ram_ + kRamSize || part.iov_len == 0) __builtin_trap();
    }
    return scatter(buffers);
  }
  int receive_fd() const override { return -1; }
  uint32_t mtu() const override { return 1500; }
  bool supports_offloads() const override { return offloads_; }
  Result<void> set_receive_offloads(const net::ReceiveOffloads&) override {
    if (!offloads_) __builtin_trap();  // the device asks only a backend that has them
    return ok();
  }

  int sent = 0;
  uint64_t handed = 0;

 private:
  Result<std::optional<size_t>> scatter(std::span<const iovec> buffers) {
    if (next_ == packets_.size()) return std::optional<size_t>();
    const ScriptedPacket& p = packets_[next_++];
    ++handed;
    size_t at = 0;
    for (const iovec& part : buffers) {
      auto* bytes = static_cast<uint8_t*>(part.iov_base);
      for (size_t i = 0; i < part.iov_len && at < p.length; ++i, ++at)
        bytes[i] = at == 0 ? p.flags : at == 1 ? p.gso_type : static_cast<uint8_t>(at * 7);
    }
    return std::optional<size_t>(at);
  }

  std::vector<ScriptedPacket> packets_;
  size_t next_ = 0;
  bool offloads_;
  bool in_place_;
  const uint8_t* ram_;
};

using hostvisor::fuzz::take;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), kRamSize}})).value();
  const uint8_t log2_rx = take<uint8_t>(data, size);
  const uint8_t log2_tx = take<uint8_t>(data, size);
  const uint8_t bits = take<uint8_t>(data, size);
  const uint8_t packet_count = take<uint8_t>(data, size) % 16;
  std::vector<ScriptedPacket> packets;
  for (uint8_t i = 0; i < packet_count; ++i) {
    ScriptedPacket p;
    p.length = take<uint16_t>(data, size);
    p.flags = take<uint8_t>(data, size);
    p.gso_type = take<uint8_t>(data, size);
    packets.push_back(p);
  }

  (void)memory.fill(GuestAddress(0), 0, kRamSize);
  (void)memory.write(GuestAddress(0), std::span(data, size < kRamSize ? size : kRamSize));

  const uint8_t* ram = memory.slice(GuestAddress(0), kRamSize).value().data();
  auto backend = std::make_unique<ScriptedBackend>(std::move(packets), bits & 8, bits & 128, ram);
  ScriptedBackend* scripted = backend.get();
  uint64_t now_ns = 1'000'000'000;
  VirtioNetOptions options;
  options.mac = {0x02, 0, 0, 0, 0, 1};
  options.queue_size = 256;
  if (bits & 64) {
    options.rate_bytes_per_second = 64 * 1024;
    options.clock_ns = [&now_ns] { return now_ns; };
  }
  VirtioNet device(std::move(backend), options);

  uint64_t features = device.device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
  if (!(bits & 1)) features &= ~virtio::feature_bit(virtio::kFeatureIndirectDesc);
  if (!(bits & 2)) features &= ~virtio::feature_bit(virtio::kFeatureEventIdx);
  if (!(bits & 4)) features &= ~virtio::feature_bit(virtio_net::kFeatureMergeableRxBuffers);
  if (bits & 16) features &= ~virtio::feature_bit(virtio_net::kFeatureGuestCsum);
  if (bits & 32) features &= ~virtio::feature_bit(virtio_net::kFeatureCsum);
  const VirtqueueLayout rx_layout{static_cast<uint16_t>(1u << (log2_rx % 9)), GuestAddress(0), GuestAddress(0x1000),
                                  GuestAddress(0x2000)};
  const VirtqueueLayout tx_layout{static_cast<uint16_t>(1u << (log2_tx % 9)), GuestAddress(0x3000),
                                  GuestAddress(0x4000), GuestAddress(0x5000)};
  auto rx = Virtqueue::create(memory, rx_layout, features);
  auto tx = Virtqueue::create(memory, tx_layout, features);
  if (!rx || !tx) __builtin_trap();  // fixed, valid layouts
  Virtqueue queues[2] = {std::move(rx).value(), std::move(tx).value()};
  bool enabled[2] = {true, true};
  testing::RecordingVirtioInterrupt interrupt;
  if (!device.activate(VirtioActivation{&memory, features, queues, enabled, &interrupt})) __builtin_trap();

  for (int round = 0; round < 4; ++round) {
    if (!device.process_queue(1)) __builtin_trap();  // guest errors are signalled, never returned
    if (!device.process_queue(0)) __builtin_trap();
    device.process_backend();
    // The device reads one packet ahead of the guest's buffers at most.
    const auto stats = device.stats();
    if (scripted->handed > stats.rx_packets + stats.rx_dropped + 1) __builtin_trap();
    pollfd rescheduled{device.reschedule_fd(), POLLIN, 0};
    if (::poll(&rescheduled, 1, 0) == 1) device.run_rescheduled();
    now_ns += 1'000'000;
  }
  const auto stats = device.stats();
  if (stats.tx_dropped_by_guest > stats.tx_dropped || stats.rx_dropped_by_guest > stats.rx_dropped) __builtin_trap();
  if (stats.tx_packets + stats.tx_dropped - stats.tx_dropped_by_guest != static_cast<uint64_t>(scripted->sent))
    __builtin_trap();
  // Config space reads at any offset stay in bounds.
  uint8_t config[16];
  device.read_config(bits % 24, config);
  device.reset();
  return 0;
}
