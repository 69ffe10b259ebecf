// Drives virtio-net through the virtqueue test driver against a real
// backend: a socketpair (the test holds the other end) and, where
// /dev/net/tun can be opened, a tap interface.
#include "devices/virtio/net/virtio_net.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/pci/virtio_pci_device.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/reschedule.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"
#include "net/datagram_socket_backend.h"
#include "net/slirp/slirp_backend.h"
#include "net/tap/tap_backend.h"
#include "net/testing/frames.h"
#include "net/testing/private_network_namespace.h"

namespace hostvisor {
namespace {

using testing::RecordingVirtioInterrupt;
using testing::VirtqueueTestDriver;

using net::VirtioNetHeader;
using net::testing::tso4_header;
using Buffer = VirtqueueTestDriver::Buffer;

constexpr uint64_t kRam = 4 << 20;
constexpr uint16_t kQueueSize = 16;
constexpr uint64_t kRxRing = 0x1000, kTxRing = 0x4000;
constexpr uint64_t kRxBuffers = 0x100000, kTxBuffers = 0x200000;
constexpr uint64_t kRxStride = 0x10000;

// An Ethernet frame of `size` bytes: broadcast, from 02:..., ethertype 0x88b5
// (IEEE local experimental), then a counting pattern from `seed`.
std::vector<uint8_t> make_frame(size_t size, uint8_t seed) {
  std::vector<uint8_t> f(size);
  for (int i = 0; i < 6; ++i) f[i] = 0xff;
  const uint8_t src[6] = {0x02, 0, 0, 0, 0, 1};
  std::memcpy(&f[6], src, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (size_t i = 14; i < size; ++i) f[i] = static_cast<uint8_t>(seed + i);
  return f;
}

class VirtioNetTest : public ::testing::Test {
 protected:
  void SetUp() override { memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value(); }

  void start_with_socketpair(bool mergeable = true, bool offloads = false, uint64_t refuse = 0) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    peer = UniqueFd(fds[1]);
    auto backend = net::DatagramSocketBackend::create(UniqueFd(fds[0]), 1500, offloads);
    ASSERT_TRUE(backend.ok());
    socket_backend = backend->get();
    start(std::move(backend).value(), mergeable, refuse);
  }
  // `refuse`: device features the simulated driver does not accept.
  void start(std::unique_ptr<net::NetBackend> backend, bool mergeable = true, uint64_t refuse = 0) {
    VirtioNetOptions options;
    options.queue_size = queue_size;
    options.mac = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
    options.rate_bytes_per_second = rate;
    options.clock_ns = clock;
    device = std::make_unique<VirtioNet>(std::move(backend), options);
    device->set_backend_interest_callback([this](bool want) { interest.push_back(want); });
    rx = std::make_unique<VirtqueueTestDriver>(memory, queue_size, kRxRing);
    tx = std::make_unique<VirtqueueTestDriver>(memory, queue_size, kTxRing);
    uint64_t features = device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    if (!mergeable) features &= ~virtio::feature_bit(virtio_net::kFeatureMergeableRxBuffers);
    features &= ~refuse;
    queues[0] = std::move(Virtqueue::create(memory, rx->layout(), features)).value();
    queues[1] = std::move(Virtqueue::create(memory, tx->layout(), features)).value();
    ASSERT_TRUE(device->activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok());
  }

  // The guest posts a receive buffer of `size` bytes (in slot rx_next's area).
  void post_rx(uint32_t size, bool notify = true) {
    rx->set_used_event(rx->used_idx());
    rx->add_chain(rx_next % kQueueSize, {{kRxBuffers + kRxStride * (rx_next % kQueueSize), size, true}});
    ++rx_next;
    if (notify) ASSERT_TRUE(device->process_queue(0).ok());
  }
  // Bytes the device wrote for used slot `slot`.
  std::vector<uint8_t> rx_bytes(uint16_t slot) {
    auto used = rx->used(slot);
    std::vector<uint8_t> b(used.len);
    EXPECT_TRUE(memory.read(GuestAddress(kRxBuffers + kRxStride * used.id), b).ok());
    return b;
  }
  // The guest transmits `frame` with a header, split over two descriptors.
  void transmit(const std::vector<uint8_t>& frame, const VirtioNetHeader& header = {}) {
    std::vector<uint8_t> packet(sizeof(VirtioNetHeader));
    std::memcpy(packet.data(), &header, sizeof header);
    packet.insert(packet.end(), frame.begin(), frame.end());
    const uint64_t at = kTxBuffers + 0x20000ull * (tx_next % 4);
    ASSERT_TRUE(memory.write(GuestAddress(at), packet).ok());
    tx->add_chain(static_cast<uint16_t>((2 * tx_next) % kQueueSize),
                  {{at, 12, false}, {at + 12, static_cast<uint32_t>(frame.size()), false}});
    ++tx_next;
    ASSERT_TRUE(device->process_queue(1).ok());
  }
  void peer_send(const std::vector<uint8_t>& frame, const VirtioNetHeader& header = {}) {
    std::vector<uint8_t> packet(sizeof(VirtioNetHeader));
    std::memcpy(packet.data(), &header, sizeof header);
    packet.insert(packet.end(), frame.begin(), frame.end());
    ASSERT_EQ(::send(peer.get(), packet.data(), packet.size(), 0), static_cast<ssize_t>(packet.size()));
  }

  GuestMemory memory;
  std::unique_ptr<VirtioNet> device;
  std::unique_ptr<VirtqueueTestDriver> rx, tx;
  Virtqueue queues[2];
  bool enabled[2] = {true, true};
  RecordingVirtioInterrupt interrupt;
  UniqueFd peer;
  net::DatagramSocketBackend* socket_backend = nullptr;
  std::vector<bool> interest;
  uint16_t rx_next = 0, tx_next = 0;
  // Set before start(): the device's rate limit and clock.
  std::optional<uint64_t> rate;
  std::function<uint64_t()> clock;
  // Set before start(): the size of both queues (post_rx and transmit assume kQueueSize).
  uint16_t queue_size = kQueueSize;
};

TEST_F(VirtioNetTest, ConfigHasMacAndLinkUp) {
  start_with_socketpair();
  virtio_net::Config c{};
  device->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  EXPECT_EQ(std::memcmp(c.mac, mac, 6), 0);
  EXPECT_EQ(c.status, virtio_net::kStatusLinkUp);
  const uint64_t f = device->device_features();
  for (unsigned bit : {virtio_net::kFeatureMac, virtio_net::kFeatureStatus, virtio_net::kFeatureMergeableRxBuffers})
    EXPECT_TRUE(f & virtio::feature_bit(bit)) << bit;
  EXPECT_FALSE(f & virtio::feature_bit(virtio_net::kFeatureCsum));
  EXPECT_EQ(device->device_type(), virtio::kDeviceNet);
}

TEST_F(VirtioNetTest, GeneratedMacIsLocalUnicast) {
  for (int i = 0; i < 32; ++i) {
    const auto mac = net::random_local_mac_address();
    EXPECT_EQ(mac[0] & 3, 2) << net::format_mac_address(mac);
  }
  auto parsed = net::parse_mac_address("52:54:00:AB:cd:0f");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(net::format_mac_address(*parsed), "52:54:00:ab:cd:0f");
  EXPECT_FALSE(net::parse_mac_address("01:00:5e:00:00:01").ok());  // multicast
  EXPECT_FALSE(net::parse_mac_address("52:54:00:ab:cd").ok());
  EXPECT_FALSE(net::parse_mac_address("52:54:00:ab:cd:zz").ok());
}

TEST_F(VirtioNetTest, TransmitsFramesToTheBackend) {
  start_with_socketpair();
  const auto frame = make_frame(1514, 3);
  transmit(frame);
  std::vector<uint8_t> got(net::kMaxPacketSize);
  const ssize_t n = ::recv(peer.get(), got.data(), got.size(), MSG_DONTWAIT);
  ASSERT_EQ(n, static_cast<ssize_t>(12 + frame.size()));
  VirtioNetHeader h;
  std::memcpy(&h, got.data(), 12);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.gso_type, net::kGsoNone);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), got.begin() + 12));
  EXPECT_EQ(tx->used_idx(), 1);
  EXPECT_EQ(tx->used(0).len, 0u);
  EXPECT_EQ(device->stats().tx_packets, 1u);
}

TEST_F(VirtioNetTest, OversizedAndRuntTransmitsAreDroppedAndReturned) {
  start_with_socketpair();
  // 64 KiB + 1 frame: over the limit, dropped, chain returned, no crash.
  transmit(make_frame(net::kMaxFrameSize + 1, 0));
  transmit(make_frame(10, 0));  // shorter than an Ethernet header
  EXPECT_EQ(tx->used_idx(), 2);
  EXPECT_EQ(device->stats().tx_dropped, 2u);
  std::vector<uint8_t> got(16);
  EXPECT_LT(::recv(peer.get(), got.data(), got.size(), MSG_DONTWAIT), 0);  // nothing sent
  // The device goes on.
  transmit(make_frame(60, 1));
  EXPECT_EQ(device->stats().tx_packets, 1u);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioNetTest, ReceivesIntoMergeableBuffers) {
  start_with_socketpair();
  for (int i = 0; i < 3; ++i) post_rx(1000);
  const auto frame = make_frame(2488, 7);  // 2500 bytes with the header
  peer_send(frame);
  device->process_backend();
  ASSERT_EQ(rx->used_idx(), 3);
  EXPECT_EQ(rx->used(0).len, 1000u);
  EXPECT_EQ(rx->used(1).len, 1000u);
  EXPECT_EQ(rx->used(2).len, 500u);
  std::vector<uint8_t> all;
  for (uint16_t s = 0; s < 3; ++s) {
    auto b = rx_bytes(s);
    all.insert(all.end(), b.begin(), b.end());
  }
  VirtioNetHeader h;
  std::memcpy(&h, all.data(), 12);
  EXPECT_EQ(h.num_buffers, 3);
  EXPECT_EQ(h.gso_type, net::kGsoNone);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), all.begin() + 12));
  EXPECT_EQ(device->stats().rx_packets, 1u);
  EXPECT_FALSE(interrupt.used.empty());
}

TEST_F(VirtioNetTest, PacketsWaitForGuestBuffers) {
  start_with_socketpair();
  // No buffers posted: reading stops and the event loop is told.
  peer_send(make_frame(100, 1));
  peer_send(make_frame(200, 2));
  device->process_backend();
  EXPECT_FALSE(device->wants_backend_events());
  ASSERT_FALSE(interest.empty());
  EXPECT_FALSE(interest.back());
  EXPECT_EQ(rx->used_idx(), 0);
  // Posting one buffer delivers one packet; the second waits for the next.
  post_rx(2048);
  ASSERT_EQ(rx->used_idx(), 1);
  EXPECT_EQ(rx->used(0).len, 112u);
  EXPECT_FALSE(device->wants_backend_events());
  post_rx(2048);
  ASSERT_EQ(rx->used_idx(), 2);
  EXPECT_EQ(rx->used(1).len, 212u);
  const auto second = rx_bytes(1);
  const auto frame = make_frame(200, 2);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), second.begin() + 12));
  // With a spare buffer and an empty socket the device listens again.
  post_rx(2048);
  EXPECT_TRUE(device->wants_backend_events());
  EXPECT_TRUE(interest.back());
}

TEST_F(VirtioNetTest, UnusedReceiveBuffersStayInTheAvailableRing) {
  start_with_socketpair();
  // Buffers posted, nothing to receive: the queue state shows none consumed,
  // so a snapshot of the transport loses no buffer.
  post_rx(1000);
  post_rx(1000);
  EXPECT_EQ(queues[0].state().next_avail, 0);
  // A packet that needs three buffers while two are posted waits; the two
  // stay available until the third arrives.
  peer_send(make_frame(2488, 1));
  device->process_backend();
  EXPECT_EQ(queues[0].state().next_avail, 0);
  EXPECT_EQ(rx->used_idx(), 0);
  post_rx(1000);
  ASSERT_EQ(rx->used_idx(), 3);
  EXPECT_EQ(queues[0].state().next_avail, 3);
  EXPECT_EQ(rx->used(0).id, 0u);
  EXPECT_EQ(rx->used(2).id, 2u);
}

TEST_F(VirtioNetTest, TooSmallBufferWithoutMergeableDropsThePacket) {
  start_with_socketpair(/*mergeable=*/false);
  post_rx(100);
  peer_send(make_frame(1000, 1));  // 1012 bytes: does not fit in 100
  peer_send(make_frame(60, 2));    // 72 bytes: fits
  device->process_backend();
  EXPECT_EQ(device->stats().rx_dropped, 1u);
  ASSERT_EQ(rx->used_idx(), 1);
  EXPECT_EQ(rx->used(0).len, 72u);
  auto b = rx_bytes(0);
  VirtioNetHeader h;
  std::memcpy(&h, b.data(), 12);
  EXPECT_EQ(h.num_buffers, 1);
  EXPECT_EQ(b[12 + 14], static_cast<uint8_t>(2 + 14));
}

TEST_F(VirtioNetTest, PacketLargerThanTheWholeRingIsDropped) {
  start_with_socketpair();
  for (int i = 0; i < kQueueSize; ++i) post_rx(16);  // 256 bytes of buffers in all
  peer_send(make_frame(1000, 1));
  peer_send(make_frame(20, 2));  // 32 bytes: two 16-byte buffers
  device->process_backend();
  EXPECT_EQ(device->stats().rx_dropped, 1u);
  ASSERT_EQ(rx->used_idx(), 2);
  EXPECT_EQ(rx->used(0).len + rx->used(1).len, 32u);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioNetTest, ReadOnlyReceiveBufferNeedsReset) {
  start_with_socketpair();
  rx->add_chain(0, {{kRxBuffers, 2048, false}});
  peer_send(make_frame(60, 1));
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_FALSE(device->wants_backend_events());
  device->reset();
  EXPECT_FALSE(device->wants_backend_events());
}

TEST_F(VirtioNetTest, ClosedPeerStopsReceiving) {
  start_with_socketpair();
  post_rx(2048);
  peer.reset();
  device->process_backend();
  EXPECT_FALSE(device->wants_backend_events());
  // Transmit still returns chains.
  transmit(make_frame(60, 0));
  EXPECT_EQ(tx->used_idx(), 1);
}

TEST_F(VirtioNetTest, PlugsIntoTheVirtioPciTransport) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd other(fds[1]);
  VirtioNetOptions options;
  options.mac = {0x02, 1, 2, 3, 4, 5};
  auto net =
      std::make_shared<VirtioNet>(std::move(net::DatagramSocketBackend::create(UniqueFd(fds[0]))).value(), options);
  auto pci = VirtioPciDevice::create(net, memory);
  ASSERT_TRUE(pci.ok()) << pci.error().message();
  EXPECT_EQ((*pci)->config_read(2, 2), 0x1040u + virtio::kDeviceNet);
  uint8_t mac[6] = {};
  (*pci)->bar_read(VirtioPciDevice::kBar, VirtioPciDevice::kDeviceCfgOffset, mac);
  EXPECT_EQ(mac[0], 0x02);
  EXPECT_EQ(mac[5], 5);
  EXPECT_FALSE(net->wants_backend_events());  // not before the driver is ready
}

VirtioNetHeader peer_receive_header(int fd, size_t* length = nullptr) {
  std::vector<uint8_t> got(net::kMaxPacketSize);
  const ssize_t n = ::recv(fd, got.data(), got.size(), MSG_DONTWAIT);
  VirtioNetHeader h{};
  h.num_buffers = 0xdead;
  if (n >= 12) std::memcpy(&h, got.data(), 12);
  if (length) *length = n < 0 ? 0 : static_cast<size_t>(n);
  return h;
}

TEST_F(VirtioNetTest, WithoutOffloadsTheBackendGetsPlainHeaders) {
  start_with_socketpair();
  EXPECT_FALSE(device->device_features() & virtio::feature_bit(virtio_net::kFeatureCsum));
  // A driver that writes offload fields anyway: the host sees a plain header.
  transmit(make_frame(100, 1), tso4_header());
  const auto h = peer_receive_header(peer.get());
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.gso_type, net::kGsoNone);
  EXPECT_EQ(h.csum_start, 0);
  // And toward the guest, a partial-checksum packet cannot be delivered.
  post_rx(4096);
  peer_send(make_frame(100, 2), tso4_header());
  VirtioNetHeader valid{};
  valid.flags = net::kHeaderDataValid;
  peer_send(make_frame(100, 3), valid);
  device->process_backend();
  EXPECT_EQ(device->stats().rx_dropped, 1u);
  ASSERT_EQ(rx->used_idx(), 1);
  VirtioNetHeader got;
  std::memcpy(&got, rx_bytes(0).data(), 12);
  EXPECT_EQ(got.flags, 0);  // DATA_VALID needs GUEST_CSUM
}

TEST_F(VirtioNetTest, OffloadHeadersPassThroughWhenNegotiated) {
  start_with_socketpair(true, /*offloads=*/true);
  for (unsigned bit : {virtio_net::kFeatureCsum, virtio_net::kFeatureGuestCsum, virtio_net::kFeatureHostTso4,
                       virtio_net::kFeatureGuestTso6})
    EXPECT_TRUE(device->device_features() & virtio::feature_bit(bit)) << bit;
  EXPECT_TRUE(socket_backend->receive_offloads().csum);
  EXPECT_TRUE(socket_backend->receive_offloads().tso4);
  EXPECT_TRUE(socket_backend->receive_offloads().ecn);
  // A 30000-byte TSO super-packet from the guest reaches the host intact.
  const auto big = make_frame(30000, 5);
  transmit(big, tso4_header());
  size_t length = 0;
  const auto h = peer_receive_header(peer.get(), &length);
  EXPECT_EQ(length, 12 + big.size());
  EXPECT_EQ(h.flags, net::kHeaderNeedsCsum);
  EXPECT_EQ(h.gso_type, net::kGsoTcpV4);
  EXPECT_EQ(h.gso_size, 1448);
  EXPECT_EQ(h.csum_start, 34);
  EXPECT_EQ(h.csum_offset, 16);
  // And one from the host reaches the guest with its header (mergeable buffers).
  for (int i = 0; i < 10; ++i) post_rx(4096);
  peer_send(big, tso4_header());
  device->process_backend();
  ASSERT_EQ(rx->used_idx(), 8);  // 30012 bytes in 4096-byte buffers
  VirtioNetHeader got;
  std::memcpy(&got, rx_bytes(0).data(), 12);
  EXPECT_EQ(got.gso_type, net::kGsoTcpV4);
  EXPECT_EQ(got.flags, net::kHeaderNeedsCsum);
  EXPECT_EQ(got.num_buffers, 8);
  // UDP fragmentation offload is not offered: such packets are dropped both ways.
  VirtioNetHeader udp = tso4_header();
  udp.gso_type = net::kGsoUdp;
  transmit(make_frame(3000, 1), udp);
  EXPECT_EQ(device->stats().tx_dropped, 1u);
  peer_send(make_frame(3000, 1), udp);
  device->process_backend();
  EXPECT_EQ(device->stats().rx_dropped, 1u);
  // A reset turns the backend's receive offloads off again.
  device->reset();
  EXPECT_FALSE(socket_backend->receive_offloads().csum);
}

TEST_F(VirtioNetTest, OffloadsTheDriverRefusedAreEnforced) {
  using namespace virtio_net;
  start_with_socketpair(true, true,
                        virtio::feature_bit(kFeatureHostTso4) | virtio::feature_bit(kFeatureGuestTso4) |
                            virtio::feature_bit(kFeatureGuestTso6));
  EXPECT_TRUE(socket_backend->receive_offloads().csum);
  EXPECT_FALSE(socket_backend->receive_offloads().tso4);
  EXPECT_FALSE(socket_backend->receive_offloads().ecn);
  // The driver may still send partial checksums, but not TSO it did not accept.
  VirtioNetHeader csum_only = tso4_header();
  csum_only.gso_type = net::kGsoNone;
  transmit(make_frame(1000, 1), csum_only);
  transmit(make_frame(1000, 1), tso4_header());
  EXPECT_EQ(device->stats().tx_packets, 1u);
  EXPECT_EQ(device->stats().tx_dropped, 1u);
  EXPECT_EQ(peer_receive_header(peer.get()).flags, net::kHeaderNeedsCsum);
  post_rx(4096);
  peer_send(make_frame(1000, 1), tso4_header());
  device->process_backend();
  EXPECT_EQ(device->stats().rx_dropped, 1u);
  EXPECT_EQ(rx->used_idx(), 0);
}

// The host sends packets from one thread, an event-loop thread feeds them to
// the device when the socket is readable (and the device wants events), and
// the driver posts and consumes buffers on a third: every packet arrives
// once, in order, intact; the socket's back-pressure means none is dropped.
// A backend under the test's control: sends fail while `fail_sends`, and
// every send first runs `on_send` (a guest vCPU acting meanwhile).
class ScriptedBackend : public net::NetBackend {
 public:
  std::string_view name() const override { return "scripted"; }
  Result<void> send(std::span<const iovec> packet) override {
    if (on_send) on_send();
    if (fail_sends) return Error(ErrorCode::kIo, "scripted: the host side is gone");
    ++sent;
    for (const iovec& v : packet) sent_bytes += v.iov_len;
    return ok();
  }
  // With endless_frame_size set, a frame of that size is always waiting.
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override {
    if (endless_frame_size == 0) return std::optional<size_t>();
    const size_t length = sizeof(VirtioNetHeader) + endless_frame_size;
    std::fill_n(buffer.begin(), length, uint8_t{0});
    ++received;
    return std::optional<size_t>(length);
  }
  int receive_fd() const override { return -1; }
  uint32_t mtu() const override { return 1500; }

  bool fail_sends = false;
  int sent = 0;
  uint64_t sent_bytes = 0;  // headers included
  size_t endless_frame_size = 0;
  int received = 0;
  std::function<void()> on_send;
};

// Transmit chain `head`: one descriptor holding a header and a 60-byte frame.
void post_tx(VirtqueueTestDriver& tx, uint16_t head) {
  tx.add_chain(head, {{kTxBuffers + 0x100ull * head, static_cast<uint32_t>(sizeof(VirtioNetHeader) + 60), false}});
}

TEST_F(VirtioNetTest, HostSendFailureDropsAndCountsThePacketAndTheDeviceGoesOn) {
  auto backend = std::make_unique<ScriptedBackend>();
  ScriptedBackend* scripted = backend.get();
  start(std::move(backend));
  scripted->fail_sends = true;
  post_tx(*tx, 0);
  ASSERT_TRUE(device->process_queue(1).ok());
  EXPECT_EQ(tx->used_idx(), 1) << "the chain goes back to the driver";
  EXPECT_EQ(device->stats().tx_dropped, 1u);
  EXPECT_TRUE(interrupt.needs_reset.empty());
  scripted->fail_sends = false;
  post_tx(*tx, 1);
  ASSERT_TRUE(device->process_queue(1).ok());
  EXPECT_EQ(tx->used_idx(), 2);
  EXPECT_EQ(device->stats().tx_packets, 1u);
  EXPECT_EQ(scripted->sent, 1);
}

// A driver that keeps refilling the transmit ring as fast as the device
// empties it: each turn takes at most a queue's worth, the rest is served on
// rescheduled turns, every packet once and in order.
TEST_F(VirtioNetTest, TransmitStormLargerThanTheQueueIsServedOverSeveralTurns) {
  auto backend = std::make_unique<ScriptedBackend>();
  ScriptedBackend* scripted = backend.get();
  start(std::move(backend));
  constexpr int kPackets = 4 * kQueueSize + 5;
  int published = 0, sends = 0;
  auto publish_next = [&] {
    if (published < kPackets) post_tx(*tx, static_cast<uint16_t>(published++ % kQueueSize));
  };
  for (int i = 0; i < kQueueSize; ++i) publish_next();
  // At send n, packet n - 1 has been returned: its head may be used again.
  scripted->on_send = [&] {
    if (++sends > 1) publish_next();
  };
  ASSERT_TRUE(device->process_queue(1).ok());
  EXPECT_EQ(tx->used_idx(), kQueueSize) << "one turn took more than the queue size";
  int turns = 1;
  while (tx->used_idx() < kPackets && testing::run_rescheduled_turn(*device)) ++turns;
  EXPECT_EQ(tx->used_idx(), kPackets);
  EXPECT_GE(turns, 4);
  for (uint16_t i = 0; i < kPackets; ++i) ASSERT_EQ(tx->used(i).id, i % kQueueSize) << i;
  EXPECT_EQ(scripted->sent, kPackets);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// Receive buffers are held while a packet is spread over them (mergeable
// buffers). A driver that makes a held head available again is refused:
// DEVICE_NEEDS_RESET, and no buffer is returned, let alone twice.
TEST_F(VirtioNetTest, ReceiveHeadReusedWhileHeldNeedsResetAndIsNeverReturnedTwice) {
  start_with_socketpair(/*mergeable=*/true);
  post_rx(100, /*notify=*/false);
  for (int i = 0; i < 4; ++i) rx->publish(0);  // the same head, again and again
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_TRUE(interrupt.needs_reset.empty()) << "no packet yet: nothing held, nothing reused";
  peer_send(make_frame(1000, 1));
  device->process_backend();
  ASSERT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_NE(interrupt.needs_reset[0].find("still holds it"), std::string::npos) << interrupt.needs_reset[0];
  EXPECT_EQ(rx->used_idx(), 0);
  device->process_backend();
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(rx->used_idx(), 0);
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_FALSE(device->wants_backend_events());
}

TEST_F(VirtioNetTest, ConcurrentReceiveDeliversEveryPacketInOrder) {
  start_with_socketpair();
  constexpr int kPackets = 2000;
  std::atomic<bool> done{false};
  std::thread host([&] {
    for (int i = 0; i < kPackets; ++i) {
      auto frame = make_frame(60 + (i * 37) % 1400, static_cast<uint8_t>(i));
      std::memcpy(&frame[14], &i, sizeof i);
      std::vector<uint8_t> packet(12);
      packet.insert(packet.end(), frame.begin(), frame.end());
      ASSERT_EQ(::send(peer.get(), packet.data(), packet.size(), 0), static_cast<ssize_t>(packet.size()));
    }
  });
  std::thread event_loop([&] {
    while (!done) {
      pollfd p{device->backend_fd(), POLLIN, 0};
      if (device->wants_backend_events() && ::poll(&p, 1, 1) == 1) {
        device->process_backend();
      } else {
        std::this_thread::yield();
      }
    }
  });
  int next = 0;
  uint32_t posted = 0, consumed = 0;
  while (next < kPackets) {
    while (posted - consumed < 8) {
      const uint16_t slot = posted % kQueueSize;
      rx->add_chain(slot, {{kRxBuffers + kRxStride * slot, 2048, true}});
      ++posted;
      ASSERT_TRUE(device->process_queue(0).ok());
    }
    while (static_cast<uint16_t>(consumed) != rx->used_idx()) {
      auto used = rx->used(static_cast<uint16_t>(consumed));
      std::vector<uint8_t> b(used.len);
      ASSERT_TRUE(memory.read(GuestAddress(kRxBuffers + kRxStride * used.id), b).ok());
      ASSERT_GE(b.size(), 12u + 18u);
      int seq;
      std::memcpy(&seq, &b[12 + 14], sizeof seq);
      ASSERT_EQ(seq, next);
      ASSERT_EQ(b.size(), 12u + 60 + (next * 37) % 1400);
      ++next;
      ++consumed;
    }
    std::this_thread::yield();
  }
  done = true;
  host.join();
  event_loop.join();
  EXPECT_EQ(device->stats().rx_packets, static_cast<uint64_t>(kPackets));
  EXPECT_EQ(device->stats().rx_dropped, 0u);
}

// --- a real tap interface, in a network namespace of the test's own

class TapTest : public VirtioNetTest {
 protected:
  void SetUp() override {
    VirtioNetTest::SetUp();
    auto netns = net::testing::enter_private_network_namespace();
    ASSERT_TRUE(netns.ok()) << netns.error().message();
    ifname = "hvtest0";
    auto tap = net::TapBackend::open(ifname);
    ASSERT_TRUE(tap.ok()) << tap.error().message();
    tap_fd = tap.value()->receive_fd();
    // No IPv6 chatter (router solicitations, MLD) on the test interface.
    std::ofstream("/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6") << "1";
    ctl = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq req{};
    std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    ASSERT_EQ(::ioctl(ctl.get(), SIOCGIFFLAGS, &req), 0);
    req.ifr_flags |= IFF_UP;
    ASSERT_EQ(::ioctl(ctl.get(), SIOCSIFFLAGS, &req), 0) << std::strerror(errno);
    ASSERT_EQ(::ioctl(ctl.get(), SIOCGIFINDEX, &req), 0);
    ifindex = req.ifr_ifindex;
    // A packet socket on the interface: sees what the guest sends, sends to the guest.
    packet = UniqueFd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x88b5)));
    ASSERT_TRUE(packet.valid()) << std::strerror(errno);
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(0x88b5);
    addr.sll_ifindex = ifindex;
    ASSERT_EQ(::bind(packet.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    start(std::move(tap).value());
  }
  bool wait_readable(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) == 1;
  }

  std::string ifname;
  int tap_fd = -1;
  int ifindex = 0;
  UniqueFd ctl, packet;
};

TEST_F(TapTest, GuestFrameAppearsOnTheHostInterface) {
  EXPECT_EQ(device->backend().name(), "tap " + ifname);
  // Linux taps do checksum and segmentation offloads; the driver took them all.
  EXPECT_TRUE(device->backend().supports_offloads());
  EXPECT_TRUE(device->device_features() & virtio::feature_bit(virtio_net::kFeatureGuestTso4));
  const auto frame = make_frame(200, 9);
  transmit(frame);
  EXPECT_EQ(device->stats().tx_packets, 1u);
  ASSERT_TRUE(wait_readable(packet.get(), 2000)) << "the frame did not reach " << ifname;
  std::vector<uint8_t> got(4096);
  const ssize_t n = ::recv(packet.get(), got.data(), got.size(), 0);
  ASSERT_EQ(n, static_cast<ssize_t>(frame.size()));
  got.resize(n);
  EXPECT_EQ(got, frame);
}

TEST_F(TapTest, HostFrameReachesTheGuestWithAVnetHeader) {
  post_rx(4096);
  auto frame = make_frame(300, 4);
  std::memcpy(&frame[0], device->mac().data(), 6);  // to the guest's MAC
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, device->mac().data(), 6);
  ASSERT_EQ(::sendto(packet.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            static_cast<ssize_t>(frame.size()))
      << std::strerror(errno);
  ASSERT_TRUE(wait_readable(device->backend_fd(), 2000)) << "nothing came out of the tap";
  device->process_backend();
  ASSERT_GE(rx->used_idx(), 1);
  const auto b = rx_bytes(0);
  ASSERT_EQ(b.size(), 12 + frame.size());
  VirtioNetHeader h;
  std::memcpy(&h, b.data(), 12);
  EXPECT_EQ(h.num_buffers, 1);
  EXPECT_EQ(h.gso_type, net::kGsoNone);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), b.begin() + 12));
}

// With room for the largest packet posted, the tap's frame is read straight
// into the guest's buffers (one readv) and arrives whole behind its header.
TEST_F(TapTest, HostFrameIsReadStraightIntoTheGuestsBuffers) {
  for (int i = 0; i < 10; ++i) post_rx(8192, /*notify=*/i == 9);
  auto frame = make_frame(1400, 6);
  std::memcpy(&frame[0], device->mac().data(), 6);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, device->mac().data(), 6);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(::sendto(packet.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(frame.size()));
  for (int waited = 0; rx->used_idx() < 3 && waited < 200; ++waited) {
    wait_readable(device->backend_fd(), 10);
    device->process_backend();
  }
  ASSERT_EQ(rx->used_idx(), 3);
  for (uint16_t slot = 0; slot < 3; ++slot) {
    const auto b = rx_bytes(slot);
    ASSERT_EQ(b.size(), 12 + frame.size());
    VirtioNetHeader h;
    std::memcpy(&h, b.data(), 12);
    EXPECT_EQ(h.num_buffers, 1);
    EXPECT_TRUE(std::equal(frame.begin(), frame.end(), b.begin() + 12)) << slot;
  }
  EXPECT_EQ(device->stats().rx_packets, 3u);
  EXPECT_EQ(device->stats().rx_bytes, 3 * frame.size());
}

// rate= holds a tap's NIC too: a burst's worth of frames reaches the host,
// the next waits in the ring (not lost) until the bucket has refilled, and
// the counters count what went.
class RateLimitedTapTest : public TapTest {
 protected:
  void SetUp() override {
    clock = [this] { return now; };
    rate = 100'000;  // bytes per second: the burst is the 64 KiB minimum
    TapTest::SetUp();
  }
  uint64_t now = 1'000'000'000;
};

TEST_F(RateLimitedTapTest, RateLimitHoldsTheTapsTransmitQueue) {
  const auto frame = make_frame(1500, 2);
  int sent = 0;
  while (device->stats().tx_throttled == 0 && sent < 100) {
    transmit(frame);
    ++sent;
  }
  ASSERT_EQ(device->stats().tx_throttled, 1u);
  const uint64_t passed = device->stats().tx_packets;
  EXPECT_EQ(passed, 65536u / 1500);
  EXPECT_EQ(device->stats().tx_bytes, passed * 1500);
  EXPECT_EQ(device->stats().tx_dropped, 0u);
  auto frames_on_the_host = [&] {
    int n = 0;
    std::vector<uint8_t> got(4096);
    while (wait_readable(packet.get(), 200) && ::recv(packet.get(), got.data(), got.size(), 0) > 0) ++n;
    return n;
  };
  EXPECT_EQ(frames_on_the_host(), static_cast<int>(passed));
  // 20 ms later the bucket holds one more frame's worth: the held chain goes.
  now += 20'000'000;
  ASSERT_TRUE(testing::run_rescheduled_turn(*device));
  EXPECT_EQ(device->stats().tx_packets, passed + 1);
  EXPECT_EQ(frames_on_the_host(), 1);
}

// --- a full tap: a host side that does not drain. What Linux does (see
// tap_backend.h): a write hands the frame to the host's stack inside the
// call, where it is dropped if the host does not take it; only a tap that is
// down refuses writes (EIO). Frames toward a guest that posts no buffers
// wait in the tap's queue, txqueuelen of them at most.

uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// The kernel's "TX dropped" of the interface (frames toward the guest the
// tap's queue had no room for), from /proc/net/dev of this namespace.
uint64_t interface_tx_dropped(const std::string& ifname) {
  std::ifstream dev("/proc/net/dev");
  std::string line;
  while (std::getline(dev, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto start = line.find_first_not_of(' ');
    if (line.substr(start, colon - start) != ifname) continue;
    std::istringstream fields(line.substr(colon + 1));
    uint64_t v[12] = {};
    for (auto& x : v) fields >> x;
    return v[11];  // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop
  }
  ADD_FAILURE() << ifname << " is not in /proc/net/dev";
  return 0;
}

class FullTapTest : public TapTest {
 protected:
  void set_link(bool up) {
    ifreq req{};
    std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    ASSERT_EQ(::ioctl(ctl.get(), SIOCGIFFLAGS, &req), 0);
    if (up)
      req.ifr_flags |= IFF_UP;
    else
      req.ifr_flags &= ~IFF_UP;
    ASSERT_EQ(::ioctl(ctl.get(), SIOCSIFFLAGS, &req), 0) << std::strerror(errno);
  }
  // The next frame the packet socket gets (errors such as ENETDOWN after a
  // link change are skipped), or nothing within `ms`.
  std::optional<std::vector<uint8_t>> next_host_frame(int ms) {
    for (int waited = 0; waited < ms; waited += 10) {
      if (!wait_readable(packet.get(), 10)) continue;
      std::vector<uint8_t> got(4096);
      const ssize_t n = ::recv(packet.get(), got.data(), got.size(), MSG_DONTWAIT);
      if (n < 0) continue;
      got.resize(static_cast<size_t>(n));
      return got;
    }
    return std::nullopt;
  }
  void drain_host() {
    std::vector<uint8_t> got(4096);
    while (::recv(packet.get(), got.data(), got.size(), MSG_DONTWAIT) > 0 || errno == ENETDOWN) {
    }
  }
};

// The guest sends 30 MB at a host socket that never reads: every write
// returns at once (the device's pass never waits), the host's stack drops
// and counts what it cannot take, the VMM holds none of it, and once the
// host reads again the guest's frames arrive.
TEST_F(FullTapTest, AGuestFloodIntoAHostThatDoesNotDrainIsDroppedByTheHostNotHeld) {
  const int small = 4096;
  ASSERT_EQ(::setsockopt(packet.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  const auto frame = make_frame(1500, 3);
  constexpr uint64_t kFrames = 20000;
  const uint64_t resident_before = resident_bytes();
  for (uint64_t i = 0; i < kFrames; ++i) transmit(frame);
  EXPECT_EQ(device->stats().tx_packets, kFrames) << "the tap took every frame";
  EXPECT_EQ(device->stats().tx_dropped, 0u);
  EXPECT_EQ(device->backend().counters()->tx_packets, kFrames);
  EXPECT_LT(resident_bytes(), resident_before + (8u << 20)) << "the VMM held frames the host did not take";
  tpacket_stats host{};
  socklen_t length = sizeof host;
  ASSERT_EQ(::getsockopt(packet.get(), SOL_PACKET, PACKET_STATISTICS, &host, &length), 0);
  EXPECT_GT(host.tp_drops, kFrames * 9 / 10) << "the host socket should have dropped what it had no room for";
  drain_host();
  const auto last = make_frame(300, 77);
  transmit(last);
  const auto got = next_host_frame(2000);
  ASSERT_TRUE(got.has_value()) << "traffic did not flow again";
  EXPECT_EQ(*got, last);
}

// A tap that is down refuses every write (EIO): each frame is dropped and
// counted, by the device and the backend, and frames flow once it is up.
TEST_F(FullTapTest, ATapThatIsDownDropsAndCountsEveryFrameAndFlowsWhenUp) {
  set_link(false);
  const auto frame = make_frame(600, 5);
  for (int i = 0; i < 100; ++i) transmit(frame);
  EXPECT_EQ(device->stats().tx_packets, 0u);
  EXPECT_EQ(device->stats().tx_dropped, 100u);
  EXPECT_EQ(device->stats().tx_dropped_by_guest, 0u) << "the host dropped them, not the guest";
  const auto backend = device->backend().counters();
  ASSERT_TRUE(backend.has_value()) << "the tap keeps no counters";
  EXPECT_EQ(backend->tx_dropped, 100u);
  EXPECT_EQ(backend->tx_packets, 0u);
  set_link(true);
  drain_host();
  transmit(frame);
  const auto got = next_host_frame(2000);
  ASSERT_TRUE(got.has_value()) << "traffic did not flow again";
  EXPECT_EQ(*got, frame);
  EXPECT_EQ(device->stats().tx_packets, 1u);
  EXPECT_EQ(device->backend().counters()->tx_packets, 1u);
  EXPECT_EQ(device->backend().counters()->tx_bytes, frame.size());
}

// The host floods a guest that posts no receive buffers: the device does
// not read, the kernel keeps txqueuelen frames in the tap's queue and drops
// (and counts) the rest; when the guest posts buffers it gets what the queue
// held, and the host's next frame.
TEST_F(FullTapTest, AGuestThatDoesNotReadLeavesTheHostsFramesInTheKernelsBoundedQueue) {
  constexpr int kQueue = 8;
  ifreq req{};
  std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  req.ifr_qlen = kQueue;
  ASSERT_EQ(::ioctl(ctl.get(), SIOCSIFTXQLEN, &req), 0) << std::strerror(errno);
  const uint64_t dropped_before = interface_tx_dropped(ifname);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, device->mac().data(), 6);
  auto send_to_guest = [&](uint8_t seed) {
    auto frame = make_frame(300, seed);
    std::memcpy(&frame[0], device->mac().data(), 6);
    EXPECT_EQ(::sendto(packet.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(frame.size()))
        << std::strerror(errno);
    return frame;
  };
  constexpr int kSent = 100;
  for (int i = 0; i < kSent; ++i) send_to_guest(static_cast<uint8_t>(i));
  device->process_backend();  // no buffers: nothing is read
  EXPECT_EQ(rx->used_idx(), 0);
  EXPECT_GE(interface_tx_dropped(ifname) - dropped_before, uint64_t{kSent - kQueue})
      << "the kernel should drop and count what the tap's queue has no room for";
  for (int i = 0; i < kQueueSize; ++i) post_rx(4096, /*notify=*/i == kQueueSize - 1);
  for (int pass = 0; pass < 20; ++pass) {
    wait_readable(device->backend_fd(), 10);
    device->process_backend();
  }
  const uint16_t held = rx->used_idx();
  EXPECT_GE(held, 1);
  EXPECT_LE(held, kQueue) << "more frames reached the guest than the tap's queue holds";
  for (uint16_t slot = 0; slot < held; ++slot) {
    const auto b = rx_bytes(slot);
    ASSERT_EQ(b.size(), 12u + 300);
    EXPECT_EQ(b[12 + 14], static_cast<uint8_t>(slot + 14)) << "the first frames sent are the ones kept, in order";
  }
  const auto next = send_to_guest(200);
  for (int waited = 0; rx->used_idx() == held && waited < 200; ++waited) {
    wait_readable(device->backend_fd(), 10);
    device->process_backend();
  }
  ASSERT_EQ(rx->used_idx(), held + 1) << "the host's next frame did not reach the guest";
  const auto b = rx_bytes(held);
  EXPECT_TRUE(std::equal(next.begin(), next.end(), b.begin() + 12));
}

// A 64 KiB frame (what a TSO super-packet toward the guest can be) spread
// over 1 KiB receive buffers: each filled to the brim in ring order, the
// last with the rest, num_buffers in the first saying how many.
TEST_F(VirtioNetTest, MergeableBuffersCarryA64KiBPacketOverManySmallBuffers) {
  queue_size = 128;
  start_with_socketpair();
  constexpr uint32_t kBuffer = 1024;
  constexpr uint64_t kSmallBuffers = kRxBuffers;
  for (uint16_t i = 0; i < 100; ++i) rx->add_chain(i, {{kSmallBuffers + uint64_t{kBuffer} * i, kBuffer, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  const auto frame = make_frame(64 * 1024, 9);
  peer_send(frame);
  device->process_backend();
  const size_t packet = sizeof(VirtioNetHeader) + frame.size();
  const uint16_t expected = static_cast<uint16_t>((packet + kBuffer - 1) / kBuffer);
  ASSERT_EQ(expected, 65);
  ASSERT_EQ(rx->used_idx(), expected);
  std::vector<uint8_t> all;
  for (uint16_t slot = 0; slot < expected; ++slot) {
    const auto used = rx->used(slot);
    ASSERT_EQ(used.id, slot);
    ASSERT_EQ(used.len, slot + 1 < expected ? kBuffer : packet - size_t{kBuffer} * (expected - 1)) << slot;
    std::vector<uint8_t> b(used.len);
    ASSERT_TRUE(memory.read(GuestAddress(kSmallBuffers + uint64_t{kBuffer} * used.id), b).ok());
    all.insert(all.end(), b.begin(), b.end());
  }
  VirtioNetHeader h;
  std::memcpy(&h, all.data(), sizeof h);
  EXPECT_EQ(h.num_buffers, expected);
  ASSERT_EQ(all.size(), packet);
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), all.begin() + sizeof h));
  // The buffers the packet did not need stay the driver's.
  EXPECT_EQ(queues[0].state().next_avail, expected);
  EXPECT_EQ(device->stats().rx_packets, 1u);
  EXPECT_EQ(device->stats().rx_bytes, frame.size());
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// A packet that needs two buffers, the second of which runs past guest RAM:
// the device writes nothing (not even into the honest first buffer), returns
// nothing and asks for a reset; the host survives.
TEST_F(VirtioNetTest, MergeableBuffersWithAChainPastGuestRamNeedResetAndWriteNothing) {
  start_with_socketpair();
  rx->add_chain(0, {{kRxBuffers, 1000, true}});
  rx->add_chain(1, {{kRam - 100, 4096, true}});
  ASSERT_TRUE(device->process_queue(0).ok());
  peer_send(make_frame(1500, 1));
  device->process_backend();
  ASSERT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_EQ(rx->used_idx(), 0);
  std::vector<uint8_t> first(1000);
  ASSERT_TRUE(memory.read(GuestAddress(kRxBuffers), first).ok());
  EXPECT_TRUE(std::all_of(first.begin(), first.end(), [](uint8_t b) { return b == 0; }));
  EXPECT_FALSE(device->wants_backend_events());
  EXPECT_EQ(device->stats().rx_packets, 0u);
}

TEST_F(VirtioNetTest, CountersCountFrameBytesAndTellGuestDropsFromBackendDrops) {
  start_with_socketpair(/*mergeable=*/false);
  transmit(make_frame(60, 1));
  transmit(make_frame(1514, 2));
  transmit(make_frame(10, 3));  // shorter than an Ethernet header: the guest's fault
  post_rx(2048);
  peer_send(make_frame(1000, 4));
  device->process_backend();
  post_rx(100);
  peer_send(make_frame(1000, 5));  // does not fit the guest's 100-byte buffer
  VirtioNetHeader partial{};
  partial.flags = net::kHeaderNeedsCsum;  // the backend was never told it may send these
  peer_send(make_frame(60, 6), partial);
  device->process_backend();
  const auto s = device->stats();
  EXPECT_EQ(s.tx_packets, 2u);
  EXPECT_EQ(s.tx_bytes, 60u + 1514u);
  EXPECT_EQ(s.tx_dropped, 1u);
  EXPECT_EQ(s.tx_dropped_by_guest, 1u);
  EXPECT_EQ(s.rx_packets, 1u);
  EXPECT_EQ(s.rx_bytes, 1000u);
  EXPECT_EQ(s.rx_dropped, 2u);
  EXPECT_EQ(s.rx_dropped_by_guest, 1u);
  EXPECT_EQ(s.tx_throttled + s.rx_throttled, 0u);
  const std::string line = VirtioNet::format_stats(s);
  EXPECT_NE(line.find("tx 2 packets 1574 bytes 1 dropped (1 malformed)"), std::string::npos) << line;
  EXPECT_NE(line.find("rx 1 packets 1000 bytes 2 dropped (1 too big"), std::string::npos) << line;
}

constexpr uint64_t kRate = 1'000'000;         // bytes per second
constexpr uint64_t kBurst = kRate / 10;       // the token bucket's default capacity at that rate
constexpr uint64_t kMillisecond = 1'000'000;  // ns
constexpr size_t kRateFrame = 1000;           // bytes per frame in the rate tests

// Transmit chain `head`: a header and a kRateFrame-byte frame in one descriptor.
void post_rate_tx(VirtqueueTestDriver& tx, uint16_t head) {
  tx.add_chain(head,
               {{kTxBuffers + 0x1000ull * head, static_cast<uint32_t>(sizeof(VirtioNetHeader) + kRateFrame), false}});
}

// A guest that always has packets queued gets the rate (and at most one
// bucket's burst on top), measured on a fake clock so that a loaded machine
// cannot skew it; while the bucket is dry the device takes no chain and
// waits for its retry timer instead of spinning.
TEST_F(VirtioNetTest, TransmitRateLimitHoldsTheRate) {
  uint64_t now = 5'000'000'000;
  clock = [&now] { return now; };
  rate = kRate;
  auto backend = std::make_unique<ScriptedBackend>();
  ScriptedBackend* scripted = backend.get();
  start(std::move(backend));
  const uint64_t start_ns = now;
  uint32_t published = 0;
  auto refill = [&] {
    while (published - tx->used_idx() < kQueueSize) post_rate_tx(*tx, static_cast<uint16_t>(published++ % kQueueSize));
  };
  constexpr int kSteps = 2000;  // two seconds of 1 ms steps
  for (int i = 0; i < kSteps; ++i) {
    refill();
    ASSERT_TRUE(device->process_queue(1).ok());  // a notify, or the retry timer
    now += kMillisecond;
  }
  const double seconds = static_cast<double>(now - start_ns - kMillisecond) / 1e9;
  const uint64_t bytes = device->stats().tx_bytes;
  EXPECT_EQ(bytes, scripted->sent_bytes - sizeof(VirtioNetHeader) * scripted->sent);
  EXPECT_LE(bytes, static_cast<uint64_t>(kRate * seconds) + kBurst + kRateFrame);
  const double measured = (static_cast<double>(bytes) - kBurst) / seconds;
  EXPECT_NEAR(measured, kRate, kRate * 0.1) << bytes << " bytes in " << seconds << " s";
  EXPECT_GT(device->stats().tx_throttled, 0u);
  EXPECT_EQ(device->stats().tx_dropped, 0u) << "a throttled guest waits, it does not lose packets";
  EXPECT_TRUE(interrupt.needs_reset.empty());

  // The bucket is dry (once the last step's millisecond is spent) and the
  // clock stands still: chains stay in the ring, and the device has asked
  // for a retry rather than polling.
  refill();
  ASSERT_TRUE(device->process_queue(1).ok());
  refill();
  const uint16_t used = tx->used_idx();
  ASSERT_TRUE(device->process_queue(1).ok());
  ASSERT_TRUE(device->process_queue(1).ok());
  EXPECT_EQ(tx->used_idx(), used);
  pollfd p{device->reschedule_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 1000), 1) << "no retry was scheduled";
  // Time passes: the retry sends what the new tokens allow, by itself.
  now += 5 * kMillisecond;
  device->run_rescheduled();
  EXPECT_EQ(tx->used_idx(), static_cast<uint16_t>(used + 5));
}

// The same toward the guest, from a backend that always has a packet: the
// device reads one packet ahead at most, holds it while the bucket is dry and
// stops watching the backend meanwhile (its fd would stay readable).
TEST_F(VirtioNetTest, ReceiveRateLimitHoldsTheRateAndStopsReadingTheBackend) {
  uint64_t now = 5'000'000'000;
  clock = [&now] { return now; };
  rate = kRate;
  auto backend = std::make_unique<ScriptedBackend>();
  ScriptedBackend* scripted = backend.get();
  scripted->endless_frame_size = kRateFrame;
  start(std::move(backend));
  const uint64_t start_ns = now;
  uint64_t posted = 0, delivered = 0;
  uint16_t last_used = 0;
  constexpr int kSteps = 2000;
  for (int i = 0; i < kSteps; ++i) {
    while (posted - delivered < kQueueSize) {
      post_rx(2048, /*notify=*/false);
      ++posted;
    }
    ASSERT_TRUE(device->process_queue(0).ok());  // a notify, or the retry timer
    delivered += static_cast<uint16_t>(rx->used_idx() - last_used);
    last_used = rx->used_idx();
    now += kMillisecond;
  }
  const double seconds = static_cast<double>(now - start_ns - kMillisecond) / 1e9;
  const auto s = device->stats();
  EXPECT_EQ(s.rx_packets, delivered);
  EXPECT_EQ(s.rx_bytes, delivered * kRateFrame);
  EXPECT_LE(s.rx_bytes, static_cast<uint64_t>(kRate * seconds) + kBurst + kRateFrame);
  const double measured = (static_cast<double>(s.rx_bytes) - kBurst) / seconds;
  EXPECT_NEAR(measured, kRate, kRate * 0.1) << s.rx_bytes << " bytes in " << seconds << " s";
  EXPECT_GT(s.rx_throttled, 0u);
  EXPECT_EQ(s.rx_dropped, 0u);
  EXPECT_LE(static_cast<uint64_t>(scripted->received) - delivered, 1u) << "read ahead of the rate limit";
  // Throttled with buffers posted (once the last step's millisecond is
  // spent): not watching the backend, a retry armed.
  ASSERT_TRUE(device->process_queue(0).ok());
  delivered += static_cast<uint16_t>(rx->used_idx() - last_used);
  EXPECT_FALSE(device->wants_backend_events());
  ASSERT_FALSE(interest.empty());
  EXPECT_FALSE(interest.back());
  pollfd p{device->reschedule_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 1000), 1) << "no retry was scheduled";
  now += 3 * kMillisecond;
  device->run_rescheduled();
  EXPECT_EQ(device->stats().rx_packets, delivered + 3);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// Against the user-mode NAT, which finishes checksums and segments itself:
// the guest is offered checksum and segmentation offloads both ways, and
// frames toward a guest that took GUEST_CSUM say DATA_VALID (slirp made
// every checksum), so a guest on the software CPU checks none.
class VirtioNetOnSlirpTest : public VirtioNetTest {
 protected:
  void start_on_slirp(uint64_t refuse) {
    net::UserNetOption option;
    option.restrict = true;  // nothing here needs to leave the process
    auto backend = net::SlirpBackend::create(option);
    ASSERT_TRUE(backend.ok()) << backend.error().message();
    slirp = backend->get();
    start(std::move(backend).value(), /*mergeable=*/true, refuse);
  }
  // The guest asks who has the gateway's address; the header of the answer.
  VirtioNetHeader gateway_arp_reply_header() {
    using namespace net::testing;
    const net::MacAddress mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    const auto request =
        arp_frame(1, mac, net::Ipv4Address{0x0a00020f}, {}, net::Ipv4Address{0x0a000202}, kBroadcastMac);
    post_rx(2048);
    transmit(request);
    slirp->service();  // the NAT's loop turn: slirp answers
    device->process_backend();
    VirtioNetHeader h{};
    if (rx->used_idx() != 1) {
      ADD_FAILURE() << "no answer from the gateway";
      return h;
    }
    const auto b = rx_bytes(0);
    std::memcpy(&h, b.data(), sizeof h);
    auto parsed = parse_frame(std::span(b).subspan(sizeof h));
    EXPECT_TRUE(parsed && parsed->ether_type == kEtherTypeArp && parsed->arp_operation == 2);
    return h;
  }
  net::SlirpBackend* slirp = nullptr;
};

TEST_F(VirtioNetOnSlirpTest, OffersOffloadsAndMarksFramesDataValidWithGuestCsum) {
  start_on_slirp(/*refuse=*/0);
  const uint64_t offered = device->device_features();
  for (unsigned bit : {virtio_net::kFeatureCsum, virtio_net::kFeatureGuestCsum, virtio_net::kFeatureHostTso4,
                       virtio_net::kFeatureHostTso6, virtio_net::kFeatureMergeableRxBuffers})
    EXPECT_TRUE(offered & virtio::feature_bit(bit)) << "feature bit " << bit;
  const auto h = gateway_arp_reply_header();
  EXPECT_EQ(h.flags, net::kHeaderDataValid);
  EXPECT_EQ(h.num_buffers, 1);
}

TEST_F(VirtioNetOnSlirpTest, WithoutGuestCsumFramesCarryNoFlags) {
  start_on_slirp(/*refuse=*/virtio::feature_bit(virtio_net::kFeatureGuestCsum));
  const auto h = gateway_arp_reply_header();
  EXPECT_EQ(h.flags, 0);
}

// Records how each packet reached it: the pieces' addresses and the bytes.
class RecordingBackend final : public net::NetBackend {
 public:
  std::string_view name() const override { return "recording"; }
  Result<void> send(std::span<const iovec> packet) override {
    std::vector<uint8_t> bytes;
    std::vector<const uint8_t*> pieces;
    for (const iovec& part : packet) {
      const auto* at = static_cast<const uint8_t*>(part.iov_base);
      pieces.push_back(at);
      bytes.insert(bytes.end(), at, at + part.iov_len);
    }
    sent.push_back({std::move(bytes), std::move(pieces)});
    return ok();
  }
  // Hands out `incoming` in order, cut to the room given, as a tap does.
  Result<std::optional<size_t>> receive(std::span<uint8_t> buffer) override {
    const iovec whole{buffer.data(), buffer.size()};
    return receive_from_queue({&whole, 1});
  }
  bool receives_in_place() const override { return in_place; }
  Result<std::optional<size_t>> receive_in_place(std::span<const iovec> buffers) override {
    received_in_place.emplace_back();
    for (const iovec& part : buffers) received_in_place.back().push_back(static_cast<const uint8_t*>(part.iov_base));
    return receive_from_queue(buffers);
  }
  int receive_fd() const override { return fd.get(); }
  uint32_t mtu() const override { return 1500; }
  struct Packet {
    std::vector<uint8_t> bytes;
    std::vector<const uint8_t*> pieces;
  };
  std::vector<Packet> sent;
  bool in_place = true;
  std::deque<std::vector<uint8_t>> incoming;                   // header + frame each
  std::vector<std::vector<const uint8_t*>> received_in_place;  // the pieces each in-place read was given

 private:
  Result<std::optional<size_t>> receive_from_queue(std::span<const iovec> buffers) {
    if (incoming.empty()) return std::optional<size_t>();
    const std::vector<uint8_t> packet = std::move(incoming.front());
    incoming.pop_front();
    size_t at = 0;
    for (const iovec& part : buffers) {
      const size_t n = std::min(part.iov_len, packet.size() - at);
      std::memcpy(part.iov_base, packet.data() + at, n);
      at += n;
    }
    return std::optional<size_t>(at);
  }
  UniqueFd fd{::eventfd(0, EFD_CLOEXEC)};
};

// A frame over several guest buffers reaches the backend as pointers into
// guest RAM (the backend's writev is its only copy), behind the device's
// own checked copy of the header; the guest's header bytes are not sent.
TEST_F(VirtioNetTest, TransmitHandsTheBackendTheGuestsBuffersNotACopy) {
  auto owned = std::make_unique<RecordingBackend>();
  RecordingBackend* backend = owned.get();
  start(std::move(owned));
  const auto frame = make_frame(9000, 7);
  VirtioNetHeader header{};
  header.gso_type = net::kGsoTcpV4;  // offloads are off: the backend must get a plain header
  std::vector<uint8_t> packet(12);
  std::memcpy(packet.data(), &header, 12);
  packet.insert(packet.end(), frame.begin(), frame.end());
  // The header split 5 + 7 with the frame's first 100 bytes in the second
  // buffer, then two more buffers.
  const uint64_t at = kTxBuffers;
  ASSERT_TRUE(memory.write(GuestAddress(at), packet).ok());
  tx->add_chain(0, {{at, 5, false},
                    {at + 5, 107, false},
                    {at + 112, 4000, false},
                    {at + 4112, static_cast<uint32_t>(packet.size() - 4112), false}});
  ASSERT_TRUE(device->process_queue(1).ok());
  ASSERT_EQ(backend->sent.size(), 1u);
  const auto& sent = backend->sent[0];
  ASSERT_EQ(sent.bytes.size(), packet.size());
  EXPECT_TRUE(std::equal(frame.begin(), frame.end(), sent.bytes.begin() + 12));
  VirtioNetHeader got;
  std::memcpy(&got, sent.bytes.data(), 12);
  EXPECT_EQ(got.gso_type, net::kGsoNone);
  const uint8_t* ram = memory.slice(GuestAddress(0), kRam).value().data();
  ASSERT_EQ(sent.pieces.size(), 4u);  // the header, then the three frame pieces
  EXPECT_TRUE(sent.pieces[0] < ram || sent.pieces[0] >= ram + kRam) << "the header must be the device's copy";
  EXPECT_EQ(sent.pieces[1], ram + at + 12);
  EXPECT_EQ(sent.pieces[2], ram + at + 112);
  EXPECT_EQ(sent.pieces[3], ram + at + 4112);
  EXPECT_EQ(device->stats().tx_packets, 1u);
}

// A buffer past the end of RAM cannot be gathered: the device fails as for
// any read of it, and nothing reaches the backend.
TEST_F(VirtioNetTest, TransmitBufferPastRamNeedsResetAndSendsNothing) {
  auto owned = std::make_unique<RecordingBackend>();
  RecordingBackend* backend = owned.get();
  start(std::move(owned));
  ASSERT_TRUE(memory.write(GuestAddress(kTxBuffers), std::vector<uint8_t>(12 + 60)).ok());
  tx->add_chain(0, {{kTxBuffers, 40, false}, {kRam - 16, 32, false}});
  ASSERT_TRUE(device->process_queue(1).ok());
  EXPECT_TRUE(backend->sent.empty());
  EXPECT_FALSE(interrupt.needs_reset.empty());
}

std::vector<uint8_t> with_header(const std::vector<uint8_t>& frame, const VirtioNetHeader& header = {}) {
  std::vector<uint8_t> packet(sizeof header);
  std::memcpy(packet.data(), &header, sizeof header);
  packet.insert(packet.end(), frame.begin(), frame.end());
  return packet;
}

// With buffers for the largest packet posted, a backend that reads packets
// from an fd reads each straight into the guest's buffers: the frame lands
// after the header's place in the first one, the checked header is written
// there after, and only the chains the packet filled are returned.
TEST_F(VirtioNetTest, ReceiveReadsStraightIntoTheGuestsBuffers) {
  queue_size = 64;
  auto owned = std::make_unique<RecordingBackend>();
  RecordingBackend* backend = owned.get();
  start(std::move(owned));
  constexpr uint32_t kBuffer = 4096;
  for (uint16_t i = 0; i < 40; ++i) rx->add_chain(i, {{kRxBuffers + uint64_t{kBuffer} * i, kBuffer, true}});
  const auto small = make_frame(100, 1), large = make_frame(10000, 2);
  backend->incoming.push_back(with_header(small));
  backend->incoming.push_back(with_header(large));
  ASSERT_TRUE(device->process_queue(0).ok());

  ASSERT_GE(backend->received_in_place.size(), 2u);
  const uint8_t* ram = memory.slice(GuestAddress(0), kRam).value().data();
  EXPECT_EQ(backend->received_in_place[0][1], ram + kRxBuffers + 12) << "the frame must go straight to guest RAM";
  EXPECT_EQ(backend->received_in_place[1][1], ram + kRxBuffers + kBuffer + 12) << "the next packet's first buffer";
  ASSERT_EQ(rx->used_idx(), 4);  // 112 bytes in one buffer, 10012 in three
  EXPECT_EQ(rx->used(0).len, 112u);
  EXPECT_EQ(rx->used(1).id, 1);
  EXPECT_EQ(rx->used(3).len, 10012u - 2 * kBuffer);
  const auto first = rx_bytes(0);
  VirtioNetHeader h;
  std::memcpy(&h, first.data(), 12);
  EXPECT_EQ(h.num_buffers, 1);
  EXPECT_TRUE(std::equal(small.begin(), small.end(), first.begin() + 12));
  std::vector<uint8_t> all(3 * kBuffer);
  ASSERT_TRUE(memory.read(GuestAddress(kRxBuffers + kBuffer), all).ok());
  std::memcpy(&h, all.data(), 12);
  EXPECT_EQ(h.num_buffers, 3);
  EXPECT_TRUE(std::equal(large.begin(), large.end(), all.begin() + 12));
  EXPECT_EQ(queues[0].state().next_avail, 4) << "the buffers the packets did not fill stay the driver's";
  EXPECT_EQ(device->stats().rx_packets, 2u);
  EXPECT_EQ(device->stats().rx_bytes, small.size() + large.size());
}

// Too few buffers for the largest packet: the packet is read into the
// device's own buffer and waits for the guest's, as without in-place reads;
// a header that was not negotiated is dropped either way.
TEST_F(VirtioNetTest, ReceiveWithFewBuffersOrABadHeaderTakesTheCopyingPath) {
  auto owned = std::make_unique<RecordingBackend>();
  RecordingBackend* backend = owned.get();
  start(std::move(owned));
  VirtioNetHeader tso{};
  tso.gso_type = net::kGsoTcpV4;  // offloads are off here
  backend->incoming.push_back(with_header(make_frame(3000, 1)));
  post_rx(2048);
  EXPECT_TRUE(backend->received_in_place.empty());
  EXPECT_EQ(rx->used_idx(), 0) << "3012 bytes do not fit one 2048-byte buffer";
  post_rx(2048);
  ASSERT_EQ(rx->used_idx(), 2);
  EXPECT_EQ(device->stats().rx_packets, 1u);

  for (int i = 0; i < 14; ++i) post_rx(8192, false);  // now room for the largest packet
  backend->incoming.push_back(with_header(make_frame(200, 2), tso));
  backend->incoming.push_back(with_header(make_frame(300, 3)));
  device->process_backend();
  EXPECT_FALSE(backend->received_in_place.empty());
  EXPECT_EQ(device->stats().rx_dropped, 1u);
  ASSERT_EQ(rx->used_idx(), 3);
  EXPECT_EQ(rx->used(2).len, 312u);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST(TapBackend, RejectsBadNames) {
  EXPECT_EQ(net::TapBackend::open("").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(net::TapBackend::open("a-name-far-too-long-for-linux").error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace hostvisor
