// virtio-vsock against a fake guest driver (the three rings in test guest
// memory, packets built by hand) and real unix sockets on the host side:
// host- and guest-initiated streams, the close handshake, RST for malformed
// packets, credit both ways, back-pressure and the snapshot's reset event.
#include "devices/virtio/vsock/virtio_vsock.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/reschedule.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"
#include "devices/virtio/vsock/vsock_unix_socket.h"

namespace hostvisor {
namespace {

using namespace virtio_vsock;
using testing::RecordingVirtioInterrupt;
using testing::VirtqueueTestDriver;

constexpr uint64_t kGuestCid = 42;
constexpr uint16_t kQueueSize = 1024;
constexpr uint64_t kRam = 64ull << 20;
constexpr uint64_t kRings[3] = {0x10000, 0x30000, 0x50000};
constexpr uint64_t kRxBuffers = 0x100000;  // kQueueSize buffers of kRxBufferSize
constexpr uint32_t kRxBufferSize = 4096;
constexpr uint64_t kTxBuffers = 0x1000000;  // kQueueSize slots of kTxSlot
constexpr uint64_t kTxSlot = 0x11000;
constexpr uint64_t kEventBuffer = 0x70000;

struct Packet {
  Header header;
  std::string payload;
};

Header header_for(uint32_t guest_port, uint32_t host_port, uint16_t op, uint32_t len = 0) {
  Header h{};
  h.src_cid = kGuestCid;
  h.dst_cid = kHostCid;
  h.src_port = guest_port;
  h.dst_port = host_port;
  h.len = len;
  h.type = kTypeStream;
  h.op = op;
  h.buf_alloc = 64 * 1024;
  return h;
}

class VirtioVsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/hv-vsock-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir = dir_template;
    uds = dir + "/vsock.sock";
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    auto created = VirtioVsock::create({kGuestCid, uds, kQueueSize});
    ASSERT_TRUE(created.ok()) << created.error().message();
    device = *created;
    activate();
  }
  void TearDown() override {
    device.reset();
    std::filesystem::remove_all(dir);
  }
  void activate() {
    const uint64_t features = device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    for (int q = 0; q < 3; ++q) {
      drivers[q] = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRings[q]);
      queues[q] = std::move(Virtqueue::create(memory, drivers[q]->layout(), features)).value();
    }
    rx_posted = rx_seen = tx_sent = 0;
    ASSERT_TRUE(device->activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok());
  }

  // --- the fake guest driver
  void post_rx(int count) {
    for (int i = 0; i < count; ++i, ++rx_posted) {
      const uint16_t head = rx_posted % kQueueSize;
      drivers[kRxQueue]->add_chain(head, {{kRxBuffers + uint64_t{head} * kRxBufferSize, kRxBufferSize, true}});
    }
    ASSERT_TRUE(device->process_queue(kRxQueue).ok());
  }
  // Every packet the device put in rx buffers since the last call.
  std::vector<Packet> received() {
    std::vector<Packet> packets;
    for (; rx_seen != drivers[kRxQueue]->used_idx(); ++rx_seen) {
      const auto used = drivers[kRxQueue]->used(rx_seen);
      const uint64_t at = kRxBuffers + uint64_t{used.id} * kRxBufferSize;
      Packet p;
      p.header = memory.read_obj<Header>(GuestAddress(at)).value();
      EXPECT_EQ(used.len, sizeof(Header) + p.header.len);
      p.payload.resize(p.header.len);
      EXPECT_TRUE(memory
                      .read(GuestAddress(at + sizeof(Header)),
                            std::span(reinterpret_cast<uint8_t*>(p.payload.data()), p.payload.size()))
                      .ok());
      packets.push_back(p);
    }
    return packets;
  }
  // The guest sends one packet (header and payload in two descriptors) and notifies.
  void send(const Header& header, const std::string& payload = {}, uint32_t payload_descriptor = ~0u) {
    const uint16_t head = (tx_sent * 2) % kQueueSize;
    const uint64_t at = kTxBuffers + uint64_t(head / 2) * kTxSlot;
    ASSERT_TRUE(memory.write_obj(GuestAddress(at), header).ok());
    ASSERT_TRUE(memory
                    .write(GuestAddress(at + 0x100),
                           std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()))
                    .ok());
    std::vector<VirtqueueTestDriver::Buffer> buffers{{at, sizeof(Header), false}};
    const uint32_t described = payload_descriptor != ~0u ? payload_descriptor : payload.size();
    if (described) buffers.push_back({at + 0x100, described, false});
    drivers[kTxQueue]->add_chain(head, buffers);
    ++tx_sent;
    ASSERT_TRUE(device->process_queue(kTxQueue).ok());
  }
  // Runs the host side as the event loop would, until it has nothing (or `ms` passed).
  void run_host(int ms = 20) {
    pollfd p{device->host_fd(), POLLIN, 0};
    while (::poll(&p, 1, ms) == 1) device->process_host();
  }

  // --- the host side
  UniqueFd host_connect(uint32_t port) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    uds.copy(addr.sun_path, uds.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string line = "CONNECT " + std::to_string(port) + "\n";
    EXPECT_EQ(::write(fd.get(), line.data(), line.size()), static_cast<ssize_t>(line.size()));
    run_host();
    return fd;
  }
  // What the host socket has now (waits up to `ms` for the first byte); "<eof>" at its end.
  static std::string host_read(int fd, int ms = 200) {
    std::string out;
    pollfd p{fd, POLLIN, 0};
    char buf[65536];
    while (::poll(&p, 1, out.empty() ? ms : 0) == 1) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) return out + "<eof>";
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // A host-initiated stream the guest accepted: the host socket and the stream's host port.
  std::pair<UniqueFd, uint32_t> established(uint32_t guest_port) {
    UniqueFd fd = host_connect(guest_port);
    auto packets = received();
    EXPECT_EQ(packets.size(), 1u);
    if (packets.size() != 1) return {std::move(fd), 0};
    const uint32_t host_port = packets[0].header.src_port;
    send(header_for(guest_port, host_port, kOpResponse));
    EXPECT_EQ(host_read(fd.get()), "OK " + std::to_string(host_port) + "\n");
    return {std::move(fd), host_port};
  }

  std::string dir, uds;
  GuestMemory memory;
  std::shared_ptr<VirtioVsock> device;
  std::unique_ptr<VirtqueueTestDriver> drivers[3];
  Virtqueue queues[3];
  bool enabled[3] = {true, true, true};
  RecordingVirtioInterrupt interrupt;
  uint32_t rx_posted = 0;
  uint16_t rx_seen = 0;
  uint32_t tx_sent = 0;
};

TEST_F(VirtioVsockTest, ConfigSpaceHoldsTheGuestCid) {
  uint8_t bytes[8];
  device->read_config(0, bytes);
  uint64_t cid;
  std::memcpy(&cid, bytes, 8);
  EXPECT_EQ(cid, kGuestCid);
  EXPECT_EQ(device->device_type(), 19u);
  EXPECT_FALSE(VirtioVsock::create({2, dir + "/other.sock"}).ok()) << "CID 2 is the host's";
  EXPECT_FALSE(VirtioVsock::create({uint64_t{1} << 32, dir + "/other.sock"}).ok());
  auto busy = VirtioVsock::create({5, uds});
  ASSERT_FALSE(busy.ok()) << "the path is this device's";
  EXPECT_NE(busy.error().message().find("in use"), std::string::npos) << busy.error().message();
}

TEST_F(VirtioVsockTest, HostInitiatedStreamCarriesDataBothWaysAndCloses) {
  post_rx(16);
  UniqueFd host = host_connect(1024);
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u);
  const Header& request = packets[0].header;
  EXPECT_EQ(request.op, kOpRequest);
  EXPECT_EQ(request.src_cid, kHostCid);
  EXPECT_EQ(request.dst_cid, kGuestCid);
  EXPECT_EQ(request.dst_port, 1024u);
  EXPECT_GE(request.src_port, VirtioVsock::kFirstHostPort);
  EXPECT_EQ(request.type, kTypeStream);
  EXPECT_EQ(request.buf_alloc, VirtioVsock::kBufferAlloc);
  EXPECT_EQ(host_read(host.get(), 50), "") << "no OK before the guest accepts";
  const uint32_t port = request.src_port;

  send(header_for(1024, port, kOpResponse));
  EXPECT_EQ(host_read(host.get()), "OK " + std::to_string(port) + "\n");
  ASSERT_EQ(::write(host.get(), "hello", 5), 5);
  run_host();
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRw);
  EXPECT_EQ(packets[0].payload, "hello");
  EXPECT_EQ(packets[0].header.dst_port, 1024u);

  send(header_for(1024, port, kOpRw, 5), "world");
  EXPECT_EQ(host_read(host.get()), "world");

  // The host program is done sending: the guest hears SHUTDOWN(SEND).
  ::shutdown(host.get(), SHUT_WR);
  run_host();
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpShutdown);
  EXPECT_EQ(packets[0].header.flags, kShutdownSend);
  // The guest may still send; then it closes, and gets the RST that ends it.
  send(header_for(1024, port, kOpRw, 3), "bye");
  send(header_for(1024, port, kOpShutdown), {});
  Header both = header_for(1024, port, kOpShutdown);
  both.flags = kShutdownSend | kShutdownReceive;
  send(both);
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRst);
  EXPECT_EQ(host_read(host.get()), "bye<eof>");
  EXPECT_EQ(device->stream_count(), 0u);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// A host program may write its first bytes right behind the CONNECT line,
// before the OK: they are the stream's, delivered once the guest accepted.
// One that hangs up before the guest answers gets the guest an RST.
TEST_F(VirtioVsockTest, BytesBehindTheConnectLineWaitForTheGuestsAcceptance) {
  post_rx(16);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  uds.copy(addr.sun_path, uds.size());
  UniqueFd host(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(host.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string first = "CONNECT 1024\n{\"op\":\"ping\"}";
  ASSERT_EQ(::write(host.get(), first.data(), first.size()), static_cast<ssize_t>(first.size()));
  run_host();
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u) << "only the REQUEST before the guest accepts";
  EXPECT_EQ(packets[0].header.op, kOpRequest);
  const uint32_t port = packets[0].header.src_port;
  send(header_for(1024, port, kOpResponse));
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRw);
  EXPECT_EQ(packets[0].payload, "{\"op\":\"ping\"}");
  EXPECT_EQ(host_read(host.get()), "OK " + std::to_string(port) + "\n");

  UniqueFd impatient = host_connect(1025);
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  impatient.reset();
  run_host();
  send(header_for(1025, packets[0].header.src_port, kOpResponse));
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRst) << "the host program is gone";
  EXPECT_EQ(device->stream_count(), 1u);
}

// A guest that never answers a REQUEST (a stuck driver): the host program's
// socket is closed after the connect timeout, and the guest gets an RST.
TEST_F(VirtioVsockTest, UnansweredConnectionTimesOut) {
  device.reset();
  auto created = VirtioVsock::create({.guest_cid = kGuestCid,
                                      .uds_path = uds,
                                      .queue_size = kQueueSize,
                                      .connect_timeout = std::chrono::milliseconds(150)});
  ASSERT_TRUE(created.ok()) << created.error().message();
  device = *created;
  activate();
  post_rx(8);
  UniqueFd host = host_connect(1024);
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRequest);
  EXPECT_EQ(host_read(host.get(), 50), "") << "still waiting";
  run_host(400);
  EXPECT_EQ(host_read(host.get()), "<eof>");
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRst);
  EXPECT_EQ(device->stream_count(), 0u);
}

TEST_F(VirtioVsockTest, GuestRefusalClosesTheHostSocketWithoutOk) {
  post_rx(4);
  UniqueFd host = host_connect(7);
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u);
  send(header_for(7, packets[0].header.src_port, kOpRst));
  EXPECT_EQ(host_read(host.get()), "<eof>");
  EXPECT_EQ(device->stream_count(), 0u);
  EXPECT_TRUE(received().empty()) << "an RST is never answered";
}

TEST_F(VirtioVsockTest, BadConnectLineAndNoDriverCloseTheSocket) {
  post_rx(4);
  UniqueFd bad = host_connect(0);
  received();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  uds.copy(addr.sun_path, uds.size());
  UniqueFd junk(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(junk.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::write(junk.get(), "HELLO\n", 6), 6);
  run_host();
  EXPECT_EQ(host_read(junk.get()), "<eof>");
  EXPECT_TRUE(received().empty());

  device->reset();
  UniqueFd early = host_connect(1024);
  EXPECT_EQ(host_read(early.get()), "<eof>") << "no driver: nobody to connect to";
}

TEST_F(VirtioVsockTest, GuestInitiatedStreamReachesTheListenerAtPathUnderscorePort) {
  post_rx(8);
  auto listener = vsock::listen_unix(uds + "_5000");
  ASSERT_TRUE(listener.ok()) << listener.error().message();
  send(header_for(33000, 5000, kOpRequest));
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpResponse);
  EXPECT_EQ(packets[0].header.src_port, 5000u);
  EXPECT_EQ(packets[0].header.dst_port, 33000u);
  pollfd p{listener->get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 1000), 1);
  UniqueFd peer(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(peer.get(), 0);
  send(header_for(33000, 5000, kOpRw, 4), "ping");
  EXPECT_EQ(host_read(peer.get()), "ping");
  ASSERT_EQ(::write(peer.get(), "pong", 4), 4);
  run_host();
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].payload, "pong");
  // The host program closes: the guest hears it, then sends its own close.
  peer.reset();
  run_host();
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpShutdown);

  // No listener at PATH_5001: RST.
  send(header_for(33001, 5001, kOpRequest));
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRst);
  EXPECT_EQ(packets[0].header.dst_port, 33001u);
}

TEST_F(VirtioVsockTest, MalformedPacketsGetAnRst) {
  post_rx(32);
  auto [host, port] = established(1024);
  ASSERT_NE(port, 0u);
  auto expect_rst = [&](const char* what, uint32_t guest_port) {
    auto packets = received();
    ASSERT_EQ(packets.size(), 1u) << what;
    EXPECT_EQ(packets[0].header.op, kOpRst) << what;
    EXPECT_EQ(packets[0].header.dst_port, guest_port) << what;
  };
  Header wrong_cid = header_for(9, 9, kOpRequest);
  wrong_cid.src_cid = kGuestCid + 1;
  send(wrong_cid);
  expect_rst("a source CID that is not the guest's", 9);
  Header other_dst = header_for(9, 9, kOpRequest);
  other_dst.dst_cid = 7;
  send(other_dst);
  expect_rst("a destination other than the host", 9);
  Header seqpacket = header_for(9, 9, kOpRequest);
  seqpacket.type = 2;
  send(seqpacket);
  expect_rst("SEQPACKET, not negotiated", 9);
  send(header_for(9, 9, kOpRw, 3), "abc");
  expect_rst("data for no stream", 9);
  send(header_for(9, 9, kOpRst));
  EXPECT_TRUE(received().empty()) << "an RST for nothing is not answered";
  EXPECT_EQ(device->stream_count(), 1u);
  // A length beyond the descriptors resets the stream it names.
  send(header_for(1024, port, kOpRw, 100), "abc", 3);
  expect_rst("len beyond the descriptor", 1024);
  EXPECT_EQ(host_read(host.get()), "<eof>") << "nothing of the bad packet reached the host";
  EXPECT_EQ(device->stream_count(), 0u);

  auto [host2, port2] = established(1025);
  send(header_for(1025, port2, 99));
  expect_rst("an unknown op", 1025);
  EXPECT_EQ(host_read(host2.get()), "<eof>");
  auto [host3, port3] = established(1026);
  send(header_for(1026, port3, kOpResponse));
  expect_rst("a RESPONSE on an established stream", 1026);
  EXPECT_TRUE(interrupt.needs_reset.empty()) << "a bad packet never needs a device reset";
}

TEST_F(VirtioVsockTest, HostNeverSendsBeyondTheGuestsCredit) {
  post_rx(64);
  auto [host, port] = established(1024);
  // The guest has 1000 bytes of buffer and has consumed nothing.
  Header credit = header_for(1024, port, kOpCreditUpdate);
  credit.buf_alloc = 1000;
  send(credit);
  const std::string data(5000, 'x');
  ASSERT_EQ(::write(host.get(), data.data(), data.size()), 5000);
  run_host();
  size_t got = 0;
  for (const auto& p : received()) got += p.payload.size();
  EXPECT_EQ(got, 1000u);
  // The guest read 600 of them: 600 more may come.
  credit.fwd_cnt = 600;
  send(credit);
  got = 0;
  for (const auto& p : received()) got += p.payload.size();
  EXPECT_EQ(got, 600u);
  credit.fwd_cnt = 1600;
  credit.buf_alloc = 64 * 1024;
  send(credit);
  got = 0;
  for (const auto& p : received()) got += p.payload.size();
  EXPECT_EQ(got, 3400u);
}

// A guest that sends as fast as its credit allows to a host program that
// does not read: the device buffers at most kBufferAlloc, the guest's credit
// runs out (back-pressure), a packet beyond it resets the stream, and once
// the host reads, credit comes back and every byte arrives in order.
TEST_F(VirtioVsockTest, FloodingGuestGetsBackPressureNotUnboundedMemory) {
  post_rx(256);
  auto [host, host_port] = established(1024);
  const uint32_t port = host_port;
  uint32_t our_buf_alloc = VirtioVsock::kBufferAlloc, our_fwd_cnt = 0, sent = 0;
  std::string pattern;
  auto guest_sends_what_credit_allows = [&] {
    for (;;) {
      for (const auto& p : received()) {
        EXPECT_EQ(p.header.op, kOpCreditUpdate);
        our_buf_alloc = p.header.buf_alloc;
        our_fwd_cnt = p.header.fwd_cnt;
      }
      const uint32_t free = our_buf_alloc - (sent - our_fwd_cnt);
      if (free == 0) return;
      const uint32_t length = std::min<uint32_t>(free, 60000);
      std::string chunk(length, '\0');
      for (uint32_t i = 0; i < length; ++i) chunk[i] = static_cast<char>((sent + i) * 7 / 3);
      pattern += chunk;
      send(header_for(1024, port, kOpRw, length), chunk);
      sent += length;
    }
  };
  guest_sends_what_credit_allows();
  // The host socket's own buffer took some; the device holds the rest, up to its credit.
  EXPECT_GE(sent, VirtioVsock::kBufferAlloc);
  EXPECT_EQ(our_buf_alloc - (sent - our_fwd_cnt), 0u) << "the guest is out of credit";
  EXPECT_EQ(device->stream_count(), 1u);

  // Now the host reads: credit comes back and the guest goes on.
  std::string arrived;
  for (int round = 0; round < 50 && arrived.size() < sent + 200000; ++round) {
    arrived += host_read(host.get(), 20);
    run_host(10);
    guest_sends_what_credit_allows();
    if (sent > 3 * VirtioVsock::kBufferAlloc) break;
  }
  for (int round = 0; round < 50 && arrived.size() < sent; ++round) {
    arrived += host_read(host.get(), 20);
    run_host(10);
  }
  EXPECT_GT(sent, 2 * VirtioVsock::kBufferAlloc);
  ASSERT_EQ(arrived.size(), pattern.size());
  EXPECT_TRUE(arrived == pattern) << "bytes arrived out of order or damaged";

  // Fill it again with the host not reading, then a packet beyond: RST. (The
  // device may have forwarded up to a quarter of its buffer it has not
  // announced yet, so the packet is that long.)
  guest_sends_what_credit_allows();
  send(header_for(1024, port, kOpRw, VirtioVsock::kBufferAlloc / 4), std::string(VirtioVsock::kBufferAlloc / 4, '!'));
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRst);
  EXPECT_EQ(device->stream_count(), 0u);
}

// A guest that posts no rx buffers but keeps sending packets that need an
// answer: the device stops taking its packets once kMaxPendingControl
// answers wait, and takes them again when buffers come.
TEST_F(VirtioVsockTest, GuestWithoutRxBuffersIsThrottled) {
  constexpr uint32_t kPackets = 1000;
  for (uint32_t i = 0; i < kPackets; ++i) {
    const uint16_t head = static_cast<uint16_t>(i);  // all in flight at once: one descriptor each
    const uint64_t at = kTxBuffers + uint64_t{head} * sizeof(Header);
    ASSERT_TRUE(memory.write_obj(GuestAddress(at), header_for(100 + i, 9, kOpRw)).ok());
    drivers[kTxQueue]->add_chain(head, {{at, sizeof(Header), false}});
  }
  ASSERT_TRUE(device->process_queue(kTxQueue).ok());
  while (testing::run_rescheduled_turn(*device, 50)) {
  }
  EXPECT_EQ(drivers[kTxQueue]->used_idx(), VirtioVsock::kMaxPendingControl);
  post_rx(kQueueSize);
  while (testing::run_rescheduled_turn(*device, 50)) {
  }
  EXPECT_EQ(drivers[kTxQueue]->used_idx(), kPackets) << "the rest is taken once answers can go";
  auto packets = received();
  ASSERT_EQ(packets.size(), kPackets);
  for (uint32_t i = 0; i < kPackets; ++i) {
    EXPECT_EQ(packets[i].header.op, kOpRst);
    EXPECT_EQ(packets[i].header.dst_port, 100 + i);
  }
}

TEST_F(VirtioVsockTest, ManyConcurrentStreamsKeepTheirBytesApart) {
  post_rx(512);
  constexpr int kStreams = 40;
  std::vector<UniqueFd> hosts;
  std::vector<uint32_t> ports;
  for (int i = 0; i < kStreams; ++i) {
    auto [fd, port] = established(2000 + i);
    ASSERT_NE(port, 0u);
    hosts.push_back(std::move(fd));
    ports.push_back(port);
  }
  for (int i = 0; i < kStreams; ++i) {
    Header credit = header_for(2000 + i, ports[i], kOpCreditUpdate);
    credit.buf_alloc = 1 << 20;
    send(credit);
  }
  for (int i = 0; i < kStreams; ++i) {
    const std::string data(3000 + i, static_cast<char>('A' + i % 26));
    ASSERT_EQ(::write(hosts[i].get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  std::vector<std::string> got(kStreams);
  for (int round = 0; round < 20; ++round) {
    run_host(20);
    for (const auto& p : received()) {
      ASSERT_EQ(p.header.op, kOpRw);
      const int i = static_cast<int>(p.header.dst_port) - 2000;
      ASSERT_TRUE(i >= 0 && i < kStreams);
      EXPECT_EQ(p.header.src_port, ports[i]);
      got[i] += p.payload;
    }
    post_rx(static_cast<int>(drivers[kRxQueue]->used_idx() + 512 - rx_posted));
  }
  for (int i = 0; i < kStreams; ++i) EXPECT_EQ(got[i], std::string(3000 + i, static_cast<char>('A' + i % 26))) << i;
  for (int i = 0; i < kStreams; ++i) {
    const std::string reply = "stream " + std::to_string(i);
    send(header_for(2000 + i, ports[i], kOpRw, reply.size()), reply);
  }
  for (int i = 0; i < kStreams; ++i) EXPECT_EQ(host_read(hosts[i].get()), "stream " + std::to_string(i));
}

// A restored device has no streams: it tells the guest's driver with a
// TRANSPORT_RESET event, and keeps the CID (or takes a clone's new one).
TEST_F(VirtioVsockTest, RestoreSendsTransportResetAndKeepsTheCid) {
  post_rx(8);
  auto [host, port] = established(1024);
  StateWriter out;
  device->save_state(out);
  EXPECT_EQ(device->state_version(), VirtioVsock::kStateVersion);

  auto restored = VirtioVsock::create({3, dir + "/restored.sock", kQueueSize});
  ASSERT_TRUE(restored.ok());
  const auto bytes = out.take();
  StateReader in(bytes, "vsock");
  ASSERT_TRUE((*restored)->restore_state(in, VirtioVsock::kStateVersion).ok());
  EXPECT_EQ((*restored)->guest_cid(), kGuestCid);
  device = *restored;
  activate();
  drivers[kEventQueue]->add_chain(0, {{kEventBuffer, 4, true}});
  ASSERT_TRUE(device->process_queue(kEventQueue).ok());
  ASSERT_EQ(drivers[kEventQueue]->used_idx(), 1);
  EXPECT_EQ(drivers[kEventQueue]->used(0).len, 4u);
  EXPECT_EQ(memory.read_obj<uint32_t>(GuestAddress(kEventBuffer)).value(), kEventTransportReset);

  // Only once: the next event buffer waits for a reason.
  drivers[kEventQueue]->add_chain(1, {{kEventBuffer + 16, 4, true}});
  ASSERT_TRUE(device->process_queue(kEventQueue).ok());
  EXPECT_EQ(drivers[kEventQueue]->used_idx(), 1);
  // A clone's new CID: another reset event, and the config says it.
  device->set_guest_cid(77);
  EXPECT_EQ(drivers[kEventQueue]->used_idx(), 2);
  uint8_t cid[8];
  device->read_config(0, cid);
  EXPECT_EQ(cid[0], 77);

  StateWriter bad;
  VirtioVsock::encode_state(bad, {2});
  const auto bad_bytes = bad.take();
  StateReader bad_in(bad_bytes, "vsock");
  EXPECT_FALSE(device->restore_state(bad_in, VirtioVsock::kStateVersion).ok()) << "CID 2 is the host's";
}

// What a guest RST does to a host-initiated stream the guest had accepted:
// the host program's socket ends at once (it must not wait for bytes that
// cannot come), and the guest hears nothing back.
TEST_F(VirtioVsockTest, GuestRstEndsAnEstablishedHostStreamAtOnce) {
  post_rx(8);
  auto [host, port] = established(1024);
  ASSERT_NE(port, 0u);
  send(header_for(1024, port, kOpRst));
  EXPECT_EQ(host_read(host.get(), 50), "<eof>");
  EXPECT_EQ(device->stream_count(), 0u);
  EXPECT_TRUE(received().empty()) << "an RST is never answered";
}

// The race after a restore. Linux's driver handles TRANSPORT_RESET by
// reading the CID and then resetting every connected socket, silently; then
// it posts the event buffer again and notifies. A host CONNECT must not reach
// the guest before that, or the guest's fresh socket is reset with the old
// ones and the host program waits for bytes that never come.
class VirtioVsockResetTest : public VirtioVsockTest {
 protected:
  // The device as a snapshot of the current one restores it, activated with
  // fresh rings; nothing is posted yet.
  void restore(std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(10000)) {
    StateWriter out;
    device->save_state(out);
    const auto bytes = out.take();
    restore_bytes(bytes, VirtioVsock::kStateVersion, connect_timeout);
  }
  void restore_bytes(const std::vector<uint8_t>& bytes, uint32_t version,
                     std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(10000)) {
    device.reset();
    auto restored = VirtioVsock::create(
        {.guest_cid = 3, .uds_path = uds, .queue_size = kQueueSize, .connect_timeout = connect_timeout});
    ASSERT_TRUE(restored.ok()) << restored.error().message();
    StateReader in(bytes, "vsock");
    auto r = (*restored)->restore_state(in, version);
    ASSERT_TRUE(r.ok()) << r.error().message();
    device = *restored;
    // A driver starting over: the old run's rings and event buffers are gone.
    const std::vector<uint8_t> zeros(kEventBuffer + 0x1000 - kRings[0]);
    ASSERT_TRUE(memory.write(GuestAddress(kRings[0]), zeros).ok());
    activate();
    event_posted = 0;
  }
  // The driver posts `count` event buffers (Linux keeps 8 posted) and notifies.
  void post_events(int count) {
    for (int i = 0; i < count; ++i, ++event_posted)
      drivers[kEventQueue]->add_chain(event_posted % kQueueSize,
                                      {{kEventBuffer + 16ull * (event_posted % 64), 4, true}});
    ASSERT_TRUE(device->process_queue(kEventQueue).ok());
  }
  // Has the device put a TRANSPORT_RESET in an event buffer?
  bool event_delivered() const {
    if (drivers[kEventQueue]->used_idx() == 0) return false;
    const auto used = drivers[kEventQueue]->used(0);
    return used.len == 4 &&
           memory.read_obj<uint32_t>(GuestAddress(kEventBuffer + 16ull * used.id)).value() == kEventTransportReset;
  }
  uint64_t driver_reads_cid() {
    uint64_t cid = 0;
    device->read_config(0, std::span(reinterpret_cast<uint8_t*>(&cid), sizeof cid));
    return cid;
  }
  uint32_t event_posted = 0;
};

TEST_F(VirtioVsockResetTest, HostConnectWaitsUntilTheDriverFinishedTheReset) {
  post_rx(8);
  auto [old_host, old_port] = established(1024);
  ASSERT_NE(old_port, 0u);
  restore();
  post_rx(16);
  EXPECT_EQ(host_read(old_host.get(), 50), "<eof>") << "the old stream's socket is gone with the old device";

  // The host connects at once, before the guest runs its driver: held.
  UniqueFd first = host_connect(1024);
  EXPECT_TRUE(received().empty()) << "no REQUEST while the reset event is still to be sent";
  EXPECT_EQ(device->held_connect_count(), 1u);

  // The driver's event buffers (8, as Linux posts) take the event.
  post_events(8);
  ASSERT_TRUE(event_delivered());
  EXPECT_EQ(drivers[kEventQueue]->used_idx(), 1);
  // The device asks to hear of the next buffer although 7 are still posted:
  // the refill goes to entry 8.
  EXPECT_EQ(drivers[kEventQueue]->avail_event(), 8);
  UniqueFd second = host_connect(1025);
  run_host();
  EXPECT_TRUE(received().empty()) << "the driver has not handled the event yet";
  EXPECT_EQ(device->held_connect_count(), 2u);

  // It reads the CID first (its handler has not reset the sockets yet).
  EXPECT_EQ(driver_reads_cid(), kGuestCid);
  ASSERT_TRUE(device->process_queue(kRxQueue).ok());
  run_host();
  EXPECT_TRUE(received().empty()) << "a config read comes before the sockets' reset";
  // Other notifications change nothing either.
  ASSERT_TRUE(device->process_queue(kEventQueue).ok());
  EXPECT_TRUE(received().empty());

  // The handler is done: it posts the buffer again and notifies. Now the
  // REQUESTs go out, oldest first, on ports past the saved run's.
  post_events(1);
  auto packets = received();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].header.op, kOpRequest);
  EXPECT_EQ(packets[0].header.dst_port, 1024u);
  EXPECT_EQ(packets[1].header.op, kOpRequest);
  EXPECT_EQ(packets[1].header.dst_port, 1025u);
  EXPECT_GT(packets[0].header.src_port, old_port) << "a port the guest may still hold from before is not reused";
  EXPECT_EQ(device->held_connect_count(), 0u);
  EXPECT_EQ(drivers[kEventQueue]->used_idx(), 1) << "one event for one reset";

  send(header_for(1024, packets[0].header.src_port, kOpResponse));
  EXPECT_EQ(host_read(first.get()), "OK " + std::to_string(packets[0].header.src_port) + "\n");

  // Later CONNECTs are not held.
  UniqueFd third = host_connect(1026);
  packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRequest);
}

// The refill may come in a notification of its own or be seen on the next
// host event: either way the held CONNECT goes out.
TEST_F(VirtioVsockResetTest, RefillSeenFromTheHostSideReleasesTheHeldConnect) {
  restore();
  post_rx(8);
  post_events(2);
  ASSERT_TRUE(event_delivered());
  UniqueFd host = host_connect(1024);
  EXPECT_TRUE(received().empty());
  // The driver refills without a notification reaching the device.
  drivers[kEventQueue]->add_chain(event_posted++, {{kEventBuffer + 16 * 5, 4, true}});
  run_host();
  EXPECT_TRUE(received().empty()) << "nothing on the host side to wake the device yet";
  ASSERT_EQ(::write(host.get(), "x", 1), 1);
  run_host();
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRequest);
}

// A driver that takes the event and never finishes (or never takes it) does
// not keep host programs waiting: the held CONNECT is closed at the connect
// timeout, the guest never hears of it, and the device stops holding.
TEST_F(VirtioVsockResetTest, HeldConnectIsClosedIfTheDriverNeverFinishes) {
  restore(std::chrono::milliseconds(150));
  post_rx(8);
  post_events(1);
  ASSERT_TRUE(event_delivered());
  UniqueFd host = host_connect(1024);
  EXPECT_EQ(device->held_connect_count(), 1u);
  EXPECT_EQ(host_read(host.get(), 50), "") << "still held";
  run_host(400);
  EXPECT_EQ(host_read(host.get()), "<eof>");
  EXPECT_TRUE(received().empty()) << "no RST for a REQUEST the guest never got";
  EXPECT_EQ(device->stream_count(), 0u);

  UniqueFd next = host_connect(1024);
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u) << "the device gave up holding";
  EXPECT_EQ(packets[0].header.op, kOpRequest);
}

// A host program that gives up while held leaves nothing behind, and the
// guest never hears of it.
TEST_F(VirtioVsockResetTest, HostCloseWhileHeldDropsTheStream) {
  restore();
  post_rx(8);
  UniqueFd host = host_connect(1024);
  EXPECT_EQ(device->held_connect_count(), 1u);
  host.reset();
  run_host();
  EXPECT_EQ(device->held_connect_count(), 0u);
  EXPECT_EQ(device->stream_count(), 0u);
  post_events(1);  // the event
  post_events(1);  // the driver is done with it
  EXPECT_TRUE(received().empty()) << "no REQUEST for a host program that left";
}

// Snapshots: version 2 keeps the next host port; version 1 (the CID alone)
// still restores, and its streams start far past the old run's ports.
TEST_F(VirtioVsockResetTest, SnapshotVersionOneStillRestores) {
  StateWriter out;
  out.put(uint64_t{kGuestCid});
  const auto bytes = out.take();
  restore_bytes(bytes, 1);
  EXPECT_EQ(device->guest_cid(), kGuestCid);
  post_rx(8);
  post_events(1);
  post_events(1);
  UniqueFd host = host_connect(1024);
  auto packets = received();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, kOpRequest);
  EXPECT_GE(packets[0].header.src_port, VirtioVsock::kFirstHostPort + (1u << 30));

  StateWriter v2;
  VirtioVsock::encode_state(v2, {kGuestCid, VirtioVsock::kFirstHostPort + 77});
  const auto v2_bytes = v2.take();
  StateReader in(v2_bytes, "vsock");
  const auto state = VirtioVsock::decode_state(in, 2);
  EXPECT_TRUE(in.finish().ok());
  EXPECT_EQ(state.guest_cid, kGuestCid);
  EXPECT_EQ(state.next_host_port, VirtioVsock::kFirstHostPort + 77);
}

}  // namespace
}  // namespace hostvisor
