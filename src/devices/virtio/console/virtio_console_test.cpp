// Drives virtio-console through the virtqueue test driver: guest output to
// the sink in order, host input into receive buffers as they appear, and the
// bounded input buffer.
#include "devices/virtio/console/virtio_console.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/pci/virtio_pci_device.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/reschedule.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {
namespace {

using testing::RecordingVirtioInterrupt;
using testing::VirtqueueTestDriver;

using Buffer = VirtqueueTestDriver::Buffer;

constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 16;
constexpr uint64_t kRxRing = 0x1000, kTxRing = 0x4000;
constexpr uint64_t kRxBuffers = 0x10000, kTxBuffers = 0x20000;

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

class VirtioConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    auto c = VirtioConsole::create([this](std::span<const uint8_t> b) { output.append(b.begin(), b.end()); }, 64);
    ASSERT_TRUE(c.ok());
    console = *c;
    rx = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRxRing);
    tx = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kTxRing);
  }
  void activate() {
    const uint64_t features = console->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    queues[0] = std::move(Virtqueue::create(memory, rx->layout(), features)).value();
    queues[1] = std::move(Virtqueue::create(memory, tx->layout(), features)).value();
    ASSERT_TRUE(console->activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok());
  }
  // The guest posts one receive buffer of `size` bytes.
  void post_rx(uint32_t size) {
    rx->set_used_event(rx->used_idx());  // as a driver waiting for the next buffer does (EVENT_IDX)
    rx->add_chain(rx_next, {{kRxBuffers + 0x100ull * rx_next, size, true}});
    ++rx_next;
    ASSERT_TRUE(console->process_queue(0).ok());
  }
  std::string received(uint16_t slot) {
    auto used = rx->used(slot);
    std::string s(used.len, '\0');
    EXPECT_TRUE(memory
                    .read(GuestAddress(kRxBuffers + 0x100ull * used.id),
                          std::span(reinterpret_cast<uint8_t*>(s.data()), s.size()))
                    .ok());
    return s;
  }
  void transmit(const std::vector<std::string>& pieces) {
    std::vector<Buffer> chain;
    uint64_t at = kTxBuffers + 0x1000ull * tx_next;
    for (const auto& p : pieces) {
      EXPECT_TRUE(memory.write(GuestAddress(at), std::span(reinterpret_cast<const uint8_t*>(p.data()), p.size())).ok());
      chain.push_back({at, static_cast<uint32_t>(p.size()), false});
      at += p.size();
    }
    tx->add_chain(static_cast<uint16_t>(tx_next * 4 % kQueueSize), chain);
    ++tx_next;
  }
  size_t enqueue(const std::string& s) {
    rx->set_used_event(rx->used_idx());
    return console->enqueue_input(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  GuestMemory memory;
  std::shared_ptr<VirtioConsole> console;
  std::unique_ptr<VirtqueueTestDriver> rx, tx;
  Virtqueue queues[2];
  bool enabled[2] = {true, true};
  RecordingVirtioInterrupt interrupt;
  std::string output;
  uint16_t rx_next = 0, tx_next = 0;
};

TEST_F(VirtioConsoleTest, GuestOutputReachesTheSinkInOrder) {
  activate();
  transmit({"hello, ", "wor"});
  transmit({"ld\n"});
  ASSERT_TRUE(console->process_queue(1).ok());
  EXPECT_EQ(output, "hello, world\n");
  EXPECT_EQ(tx->used_idx(), 2);
  EXPECT_EQ(tx->used(0).len, 0u);  // nothing written into transmit buffers
  EXPECT_EQ(interrupt.used, std::vector<uint16_t>{1});
  transmit({"more"});
  ASSERT_TRUE(console->process_queue(1).ok());
  EXPECT_EQ(output, "hello, world\nmore");
}

TEST_F(VirtioConsoleTest, InputWaitsForReceiveBuffers) {
  // Typed before the driver is even ready.
  EXPECT_EQ(enqueue("ab"), 2u);
  activate();
  EXPECT_EQ(console->input_pending(), 2u);  // no buffers yet
  post_rx(8);
  EXPECT_EQ(rx->used_idx(), 1);
  EXPECT_EQ(received(0), "ab");
  EXPECT_EQ(console->input_pending(), 0u);
  // With a buffer waiting, input goes straight in; one that does not fit
  // spills into the next buffer the driver posts.
  post_rx(4);
  EXPECT_EQ(rx->used_idx(), 1);  // an empty buffer is kept, not returned
  EXPECT_EQ(enqueue("cdefgh"), 6u);
  EXPECT_EQ(received(1), "cdef");
  EXPECT_EQ(console->input_pending(), 2u);
  post_rx(4);
  EXPECT_EQ(received(2), "gh");
  EXPECT_EQ(console->input_pending(), 0u);
  EXPECT_EQ(std::count(interrupt.used.begin(), interrupt.used.end(), 0), 3);
}

TEST_F(VirtioConsoleTest, FullInputBufferRefusesAndSignalsSpace) {
  activate();
  EXPECT_EQ(enqueue(std::string(60, 'x')), 60u);
  EXPECT_EQ(enqueue("0123456789"), 4u);  // capacity 64: the rest is refused, not dropped
  EXPECT_EQ(console->input_pending(), 64u);
  EXPECT_FALSE(readable(console->input_space_fd()));
  post_rx(16);
  EXPECT_TRUE(readable(console->input_space_fd()));
  EXPECT_EQ(console->input_pending(), 48u);
  EXPECT_EQ(enqueue("456789"), 6u);
  // Everything accepted arrives in order.
  std::string all;
  for (int i = 0; i < 8; ++i) post_rx(16);
  for (uint16_t s = 0; s < rx->used_idx(); ++s) all += received(s);
  EXPECT_EQ(all, std::string(60, 'x') + "0123456789");
}

TEST_F(VirtioConsoleTest, TerminalSizeIsInTheConfigSpace) {
  EXPECT_TRUE(console->device_features() & virtio::feature_bit(virtio_console::kFeatureSize));
  virtio_console::Config c{};
  console->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  EXPECT_EQ(c.cols, 80);
  EXPECT_EQ(c.rows, 24);
  activate();
  EXPECT_EQ(interrupt.config_changes, 0) << "no size from the host, nothing to announce";
  console->reset();
  console->set_size(132, 50);  // before the driver: no interrupt yet ...
  EXPECT_EQ(interrupt.config_changes, 0);
  activate();
  EXPECT_EQ(interrupt.config_changes, 1) << "... but as soon as the driver is ready";
  console->set_size(100, 40);
  EXPECT_EQ(interrupt.config_changes, 2);
  console->set_size(100, 40);  // no change, no interrupt
  EXPECT_EQ(interrupt.config_changes, 2);
  uint16_t rows = 0;
  console->read_config(2, std::span(reinterpret_cast<uint8_t*>(&rows), 2));
  EXPECT_EQ(rows, 40);
}

TEST_F(VirtioConsoleTest, EmergencyWriteGoesToTheSink) {
  EXPECT_TRUE(console->device_features() & virtio::feature_bit(virtio_console::kFeatureEmergencyWrite));
  const uint32_t c = 'Z';
  console->write_config(8, std::span(reinterpret_cast<const uint8_t*>(&c), 4));
  EXPECT_EQ(output, "Z");
}

TEST_F(VirtioConsoleTest, ReadOnlyReceiveBufferNeedsReset) {
  activate();
  rx->add_chain(0, {{kRxBuffers, 16, false}});
  enqueue("x");
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_EQ(rx->used_idx(), 0);
  // Stopped until reset; the input is kept for the next driver.
  console->reset();
  EXPECT_EQ(console->input_pending(), 1u);
}

TEST_F(VirtioConsoleTest, ResetStopsQueueUse) {
  activate();
  console->reset();
  transmit({"ignored"});
  ASSERT_TRUE(console->process_queue(1).ok());
  EXPECT_EQ(output, "");
  EXPECT_EQ(tx->used_idx(), 0);
}

// Host input from one thread while the driver posts and consumes buffers on
// another: every byte arrives once, in order.
TEST_F(VirtioConsoleTest, ConcurrentInputArrivesInOrder) {
  auto c = VirtioConsole::create(VirtioConsole::OutputSink(), 1024);
  ASSERT_TRUE(c.ok());
  console = *c;
  activate();
  constexpr size_t kTotal = 200 * 1024;
  std::thread host([&] {
    std::vector<uint8_t> chunk(700);
    for (size_t sent = 0; sent < kTotal;) {
      const size_t n = std::min(chunk.size(), kTotal - sent);
      for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<uint8_t>((sent + i) * 131 >> 3);
      size_t done = 0;
      while (done < n) {
        done += console->enqueue_input(std::span<const uint8_t>(chunk.data() + done, n - done));
        if (done < n) {
          pollfd p{console->input_space_fd(), POLLIN, 0};
          ::poll(&p, 1, 5);
          uint64_t v;
          [[maybe_unused]] ssize_t r = ::read(console->input_space_fd(), &v, sizeof v);
        }
      }
      sent += n;
    }
  });
  std::vector<uint8_t> got;
  uint32_t posted = 0, consumed = 0;
  while (got.size() < kTotal) {
    while (posted - consumed < 8) {
      const uint16_t slot = posted % kQueueSize;
      rx->add_chain(slot, {{kRxBuffers + 0x100ull * slot, 64, true}});
      ++posted;
    }
    ASSERT_TRUE(console->process_queue(0).ok());
    while (static_cast<uint16_t>(consumed) != rx->used_idx()) {
      auto used = rx->used(static_cast<uint16_t>(consumed));
      std::vector<uint8_t> b(used.len);
      ASSERT_TRUE(memory.read(GuestAddress(kRxBuffers + 0x100ull * used.id), b).ok());
      got.insert(got.end(), b.begin(), b.end());
      ++consumed;
    }
  }
  host.join();
  ASSERT_EQ(got.size(), kTotal);
  for (size_t i = 0; i < kTotal; ++i) ASSERT_EQ(got[i], static_cast<uint8_t>(i * 131 >> 3)) << i;
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

// The host cannot take the output (a terminal gone): that chain's output is
// dropped and counted, the chain goes back, and the device goes on.
TEST_F(VirtioConsoleTest, SinkFailureDropsAndCountsTheOutputAndTheDeviceGoesOn) {
  bool refuse = true;
  auto c = VirtioConsole::create(VirtioConsole::OutputSink([&](std::span<const uint8_t> b) {
    if (refuse) return false;
    output.append(b.begin(), b.end());
    return true;
  }));
  ASSERT_TRUE(c.ok());
  console = *c;
  activate();
  transmit({"lost"});
  ASSERT_TRUE(console->process_queue(1).ok());
  EXPECT_EQ(tx->used_idx(), 1);
  EXPECT_EQ(console->output_dropped(), 1u);
  EXPECT_TRUE(interrupt.needs_reset.empty());
  refuse = false;
  transmit({"kept"});
  ASSERT_TRUE(console->process_queue(1).ok());
  EXPECT_EQ(output, "kept");
  EXPECT_EQ(tx->used_idx(), 2);
  EXPECT_EQ(console->output_dropped(), 1u);
}

// A guest that makes one transmit head available again and again, each time
// right after the device returned it, faster than the device drains: each
// turn takes at most a queue's worth, the rest comes on rescheduled turns,
// and every publication is served exactly once, in order. (The console
// returns every chain before it takes the next, so a head it holds can
// never be reused under it; the core refuses such a head for the devices
// that hold chains.)
TEST_F(VirtioConsoleTest, StormOfOneReusedHeadIsServedOncePerPublicationOverSeveralTurns) {
  constexpr int kWrites = 3 * kQueueSize + 7;
  constexpr uint16_t kHead = 5;
  int published = 0;
  auto publish = [&] {
    if (published >= kWrites) return;
    const char c = static_cast<char>('a' + published % 26);
    ASSERT_TRUE(memory.write_obj(GuestAddress(kTxBuffers), c).ok());
    tx->add_chain(kHead, {{kTxBuffers, 1, false}});
    ++published;
  };
  auto c = VirtioConsole::create(VirtioConsole::OutputSink([&](std::span<const uint8_t> b) {
    output.append(b.begin(), b.end());
    publish();  // the guest reuses the head as soon as it sees it used
    return true;
  }));
  ASSERT_TRUE(c.ok());
  console = *c;
  activate();
  publish();
  ASSERT_TRUE(console->process_queue(1).ok());
  EXPECT_EQ(tx->used_idx(), kQueueSize) << "one turn took more than the queue size";
  int turns = 1;
  while (tx->used_idx() < kWrites && testing::run_rescheduled_turn(*console)) ++turns;
  ASSERT_EQ(tx->used_idx(), kWrites);
  EXPECT_GE(turns, 4);
  std::string expected;
  for (int i = 0; i < kWrites; ++i) expected += static_cast<char>('a' + i % 26);
  EXPECT_EQ(output, expected);
  for (uint16_t i = 0; i < kWrites; ++i) ASSERT_EQ(tx->used(i).id, kHead) << i;
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioConsoleTest, PlugsIntoTheVirtioPciTransport) {
  auto pci = VirtioPciDevice::create(console, memory);
  ASSERT_TRUE(pci.ok()) << pci.error().message();
  EXPECT_EQ((*pci)->config_read(2, 2), 0x1040u + virtio::kDeviceConsole);
  // emerg_wr through the BAR's device configuration window.
  const uint32_t c = '!';
  (*pci)->bar_write(VirtioPciDevice::kBar, VirtioPciDevice::kDeviceCfgOffset + 8,
                    std::span(reinterpret_cast<const uint8_t*>(&c), 4));
  EXPECT_EQ(output, "!");
}

}  // namespace
}  // namespace hostvisor
