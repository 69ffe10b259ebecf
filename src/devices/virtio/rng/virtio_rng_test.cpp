// Drives virtio-rng through the virtqueue test driver: requests filled from
// the entropy source, a storm with a head reused while in flight, a storm
// larger than the queue served over several turns, and a source that fails
// for a while.
#include "devices/virtio/rng/virtio_rng.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <vector>

#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/reschedule.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {
namespace {

using testing::RecordingVirtioInterrupt;
using testing::run_rescheduled_turn;
using testing::VirtqueueTestDriver;

constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 16;
constexpr uint64_t kRing = 0x1000;
constexpr uint64_t kBuffers = 0x10000;
constexpr uint32_t kRequestBytes = 32;

class VirtioRngTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    driver = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRing);
  }
  // A device over `source`: the test's entropy, which calls on_fill first.
  void start(bool source_fails = false) {
    device = std::make_shared<VirtioRng>([this](std::span<uint8_t> out) -> Result<void> {
      ++fills;
      if (on_fill) on_fill();
      if (failing) return Error(ErrorCode::kIo, "entropy source: not yet");
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(0xa0 + i);
      return ok();
    });
    failing = source_fails;
    const uint64_t features = device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    queue[0] = std::move(Virtqueue::create(memory, driver->layout(), features)).value();
    ASSERT_TRUE(device->activate(VirtioActivation{&memory, features, queue, enabled, &interrupt}).ok());
  }
  // The driver posts request buffer `head` (one descriptor, its own buffer).
  void post(uint16_t head) { driver->add_chain(head, {{kBuffers + 0x100ull * head, kRequestBytes, true}}); }
  bool filled(uint16_t head) {
    auto b = memory.read_obj<uint8_t>(GuestAddress(kBuffers + 0x100ull * head + 1));
    return b.ok() && *b == 0xa1;
  }
  // Every used element's head, in order.
  std::vector<uint32_t> answered() {
    std::vector<uint32_t> heads;
    for (uint16_t i = 0; i < driver->used_idx(); ++i) heads.push_back(driver->used(i).id);
    return heads;
  }

  GuestMemory memory;
  std::unique_ptr<VirtqueueTestDriver> driver;
  std::shared_ptr<VirtioRng> device;
  Virtqueue queue[1];
  bool enabled[1] = {true};
  RecordingVirtioInterrupt interrupt;
  bool failing = false;
  int fills = 0;
  std::function<void()> on_fill;
};

TEST_F(VirtioRngTest, FillsEveryRequestFromTheSource) {
  start();
  for (uint16_t head = 0; head < 3; ++head) post(head);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(answered(), (std::vector<uint32_t>{0, 1, 2}));
  for (uint16_t head = 0; head < 3; ++head) {
    EXPECT_TRUE(filled(head)) << head;
    EXPECT_EQ(driver->used(head).len, kRequestBytes);
  }
  EXPECT_EQ(interrupt.used, std::vector<uint16_t>{0});  // one interrupt for the turn
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioRngTest, DefaultSourceIsTheHostKernel) {
  VirtioRng rng;
  std::vector<uint8_t> bytes(64, 0);
  ASSERT_TRUE(VirtioRng::host_entropy(bytes).ok());
  EXPECT_NE(bytes, std::vector<uint8_t>(64, 0));
  EXPECT_GE(rng.reschedule_fd(), 0);
}

// The driver makes head 3 available again while the device still holds it
// (waiting for entropy): guest misuse. The device needs a reset and never
// answers head 3, let alone twice, even once entropy comes.
TEST_F(VirtioRngTest, HeadReusedWhileInFlightNeedsResetAndIsNeverAnsweredTwice) {
  start(/*source_fails=*/true);
  post(3);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_TRUE(interrupt.needs_reset.empty());
  for (int i = 0; i < 3; ++i) driver->publish(3);  // a storm of the same head
  ASSERT_TRUE(device->process_queue(0).ok());
  ASSERT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_NE(interrupt.needs_reset[0].find("still holds it"), std::string::npos) << interrupt.needs_reset[0];
  failing = false;
  run_rescheduled_turn(*device, 300);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), 0);
  EXPECT_EQ(interrupt.needs_reset.size(), 1u);
  // After the driver's reset the device serves again.
  device->reset();
  driver = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRing + 0x8000);
  start();
  post(3);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(answered(), std::vector<uint32_t>{3});
}

// A guest that refills the ring as fast as the device empties it: each turn
// takes at most a queue's worth of chains and asks for another turn, so the
// notifying thread comes back; every request is still served once, in order.
TEST_F(VirtioRngTest, StormLargerThanTheQueueIsServedOverSeveralTurns) {
  start();
  constexpr int kRequests = 5 * kQueueSize + 3;
  int published = 0;
  auto publish_next = [&] {
    if (published < kRequests) post(static_cast<uint16_t>(published++ % kQueueSize));
  };
  for (int i = 0; i < kQueueSize; ++i) publish_next();
  // Each fill of request n: request n - 1 has been answered, so its head may
  // be made available again.
  on_fill = [&] {
    if (fills > 1) publish_next();
  };
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), kQueueSize) << "one turn took more than the queue size";
  int turns = 1;
  while (driver->used_idx() < kRequests && run_rescheduled_turn(*device)) {
    ++turns;
    ASSERT_LE(driver->used_idx(), turns * kQueueSize);
  }
  EXPECT_EQ(driver->used_idx(), kRequests);
  EXPECT_GE(turns, 5);
  for (uint16_t i = 0; i < kRequests; ++i) ASSERT_EQ(driver->used(i).id, i % kQueueSize) << i;
  EXPECT_TRUE(interrupt.needs_reset.empty());
  EXPECT_FALSE(run_rescheduled_turn(*device, 0)) << "nothing left, no more turns";
}

// No entropy: the request is held (never answered short or with made-up
// bytes), retried from the event loop, and served when entropy comes; the
// device is never reset for it.
TEST_F(VirtioRngTest, FailingSourceHoldsTheRequestUntilEntropyComes) {
  start(/*source_fails=*/true);
  post(0);
  post(1);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), 0);
  EXPECT_FALSE(filled(0));
  EXPECT_TRUE(interrupt.needs_reset.empty());
  // Still none: the retry holds on, without spinning.
  const int tries = fills;
  ASSERT_TRUE(run_rescheduled_turn(*device, 2000));
  EXPECT_EQ(driver->used_idx(), 0);
  EXPECT_EQ(fills, tries + 1);
  // A request made available meanwhile waits behind the held ones.
  post(2);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), 0);
  failing = false;
  ASSERT_TRUE(run_rescheduled_turn(*device, 2000));
  EXPECT_EQ(answered(), (std::vector<uint32_t>{0, 1, 2}));
  for (uint16_t head = 0; head < 3; ++head) EXPECT_TRUE(filled(head)) << head;
  EXPECT_TRUE(interrupt.needs_reset.empty());
  // And keeps serving.
  post(3);
  ASSERT_TRUE(device->process_queue(0).ok());
  EXPECT_EQ(driver->used_idx(), 4);
}

TEST_F(VirtioRngTest, ResetDropsAHeldRequest) {
  start(/*source_fails=*/true);
  post(0);
  ASSERT_TRUE(device->process_queue(0).ok());
  device->reset();
  failing = false;
  EXPECT_FALSE(run_rescheduled_turn(*device, 300)) << "a reset device asks for nothing";
  EXPECT_EQ(driver->used_idx(), 0);
}

}  // namespace
}  // namespace hostvisor
