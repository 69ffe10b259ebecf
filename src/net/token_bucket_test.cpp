#include "net/token_bucket.h"

#include <gtest/gtest.h>

namespace hostvisor::net {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

// A sender that always has a packet waiting sends whenever the bucket lets
// it; returns the bytes it got through in `duration`.
uint64_t saturate(TokenBucket& bucket, uint64_t packet_bytes, uint64_t duration, uint64_t step_ns) {
  uint64_t sent = 0;
  for (uint64_t now = 0; now < duration; now += step_ns) {
    while (bucket.try_consume(packet_bytes, now)) sent += packet_bytes;
  }
  return sent;
}

TEST(TokenBucket, HoldsTheRateWithinTenPercentForEveryPacketSize) {
  for (uint64_t rate : {100'000ull, 1'000'000ull, 12'500'000ull}) {
    for (uint64_t packet : {64ull, 1514ull, 65'549ull}) {
      TokenBucket bucket(rate, 0, 0);
      const uint64_t duration = 10 * kSecond;
      const double got = static_cast<double>(saturate(bucket, packet, duration, 100'000)) / 10.0;
      EXPECT_NEAR(got, static_cast<double>(rate), 0.1 * static_cast<double>(rate))
          << "rate " << rate << " packet " << packet;
    }
  }
}

TEST(TokenBucket, AnIdleSenderSavesNoMoreThanTheCapacity) {
  TokenBucket bucket(1'000'000, 50'000, 0);
  uint64_t burst = 0;
  while (bucket.try_consume(1000, 60 * kSecond)) burst += 1000;  // a minute idle
  EXPECT_EQ(burst, 50'000u);
  EXPECT_FALSE(bucket.try_consume(1, 60 * kSecond));
}

TEST(TokenBucket, APacketBiggerThanTheBucketGoesWhenFullAndLeavesDebt) {
  TokenBucket bucket(1000, 100, 0);
  EXPECT_TRUE(bucket.try_consume(300, 0));  // full bucket: goes, 200 bytes owed
  EXPECT_FALSE(bucket.try_consume(1, 0));
  // The debt (200) and one byte take 201 ms at 1000 B/s.
  EXPECT_EQ(bucket.ns_until_available(1, 0), 201'000'000u);
  EXPECT_FALSE(bucket.try_consume(1, 200'000'000));
  EXPECT_TRUE(bucket.try_consume(1, 201'000'000));
}

TEST(TokenBucket, SaysHowLongToWait) {
  TokenBucket bucket(1'000'000, 10'000, 0);
  EXPECT_EQ(bucket.ns_until_available(10'000, 0), 0u);
  ASSERT_TRUE(bucket.try_consume(10'000, 0));
  EXPECT_EQ(bucket.ns_until_available(1'000, 0), 1'000'000u);  // 1000 bytes at 1 MB/s: 1 ms
  EXPECT_FALSE(bucket.try_consume(1'000, 999'999));
  EXPECT_TRUE(bucket.try_consume(1'000, 1'000'000));
}

TEST(TokenBucket, DefaultCapacityIsATenthOfASecondButAtLeastOneSuperPacket) {
  EXPECT_EQ(TokenBucket(10'000'000, 0, 0).capacity(), 1'000'000u);
  EXPECT_EQ(TokenBucket(1000, 0, 0).capacity(), 65'536u);
}

TEST(TokenBucket, AClockGoingBackwardsAddsNothing) {
  TokenBucket bucket(1000, 1000, 5 * kSecond);
  ASSERT_TRUE(bucket.try_consume(1000, 5 * kSecond));
  EXPECT_FALSE(bucket.try_consume(1, kSecond));
  EXPECT_TRUE(bucket.try_consume(1, 5 * kSecond + 1'000'000));
}

}  // namespace
}  // namespace hostvisor::net
