#include "net/packet_queue.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <thread>

namespace hostvisor::net {
namespace {

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

bool push_bytes(PacketQueue& q, std::vector<uint8_t> bytes) {
  const iovec part{bytes.data(), bytes.size()};
  return q.push({&part, 1});
}

TEST(PacketQueue, TheEventIsReadableExactlyWhilePacketsWait) {
  auto q = PacketQueue::create(4, 1 << 20).value();
  EXPECT_FALSE(readable(q->event_fd()));
  ASSERT_TRUE(push_bytes(*q, {1, 2, 3}));
  ASSERT_TRUE(push_bytes(*q, {4}));
  EXPECT_TRUE(readable(q->event_fd()));
  std::vector<uint8_t> out(16);
  EXPECT_EQ(q->pop(out), 3u);
  EXPECT_EQ(out[2], 3);
  EXPECT_TRUE(readable(q->event_fd()));
  EXPECT_EQ(q->pop(out), 1u);
  EXPECT_FALSE(readable(q->event_fd()));
  EXPECT_FALSE(q->pop(out).has_value());
}

TEST(PacketQueue, RefusesPacketsBeyondItsCountOrBytes) {
  auto by_count = PacketQueue::create(2, 1 << 20).value();
  EXPECT_TRUE(push_bytes(*by_count, {1}));
  EXPECT_TRUE(push_bytes(*by_count, {2}));
  EXPECT_FALSE(push_bytes(*by_count, {3}));
  EXPECT_EQ(by_count->size(), 2u);

  auto by_bytes = PacketQueue::create(100, 10).value();
  EXPECT_TRUE(push_bytes(*by_bytes, std::vector<uint8_t>(6)));
  EXPECT_FALSE(push_bytes(*by_bytes, std::vector<uint8_t>(5)));
  EXPECT_TRUE(push_bytes(*by_bytes, std::vector<uint8_t>(4)));
  EXPECT_EQ(by_bytes->bytes(), 10u);
}

TEST(PacketQueue, GathersScatteredPacketsAndCutsToTheBuffer) {
  auto q = PacketQueue::create(4, 1 << 20).value();
  uint8_t a[] = {1, 2}, b[] = {3, 4, 5};
  const iovec parts[] = {{a, 2}, {b, 3}};
  ASSERT_TRUE(q->push(parts));
  std::vector<uint8_t> small(4);
  EXPECT_EQ(q->pop(small), 4u);
  EXPECT_EQ(small, (std::vector<uint8_t>{1, 2, 3, 4}));
}

TEST(PacketQueue, KeepsOrderAcrossThreads) {
  auto q = PacketQueue::create(64, 1 << 20).value();
  constexpr uint32_t kCount = 20000;
  std::thread producer([&] {
    for (uint32_t i = 0; i < kCount;) {
      iovec part{&i, sizeof i};
      if (q->push({&part, 1})) ++i;
    }
  });
  uint32_t expected = 0;
  std::vector<uint8_t> out(4);
  while (expected < kCount) {
    if (!q->pop(out)) continue;
    uint32_t got;
    std::memcpy(&got, out.data(), 4);
    ASSERT_EQ(got, expected);
    ++expected;
  }
  producer.join();
  EXPECT_FALSE(readable(q->event_fd()));
}

}  // namespace
}  // namespace hostvisor::net
