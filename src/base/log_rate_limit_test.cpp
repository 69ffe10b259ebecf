#include "base/log_rate_limit.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

using Clock = LogRateLimit::Clock;

TEST(LogRateLimitTest, PassesABurstThenOnePerIntervalAndCountsWhatItHeldBack) {
  LogRateLimit limit;
  const Clock::time_point t0{};
  uint64_t held = 99;
  for (unsigned i = 0; i < LogRateLimit::kBurst; ++i) {
    ASSERT_TRUE(limit.allow(&held, t0)) << i;
    EXPECT_EQ(held, 0u);
  }
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limit.allow(&held, t0 + std::chrono::seconds(1)));
  EXPECT_FALSE(limit.allow(&held, t0 + LogRateLimit::kInterval - std::chrono::milliseconds(1)));
  ASSERT_TRUE(limit.allow(&held, t0 + LogRateLimit::kInterval));
  EXPECT_EQ(held, 1001u);
  EXPECT_FALSE(limit.allow(&held, t0 + LogRateLimit::kInterval + std::chrono::seconds(1)));
  ASSERT_TRUE(limit.allow(&held, t0 + 2 * LogRateLimit::kInterval));
  EXPECT_EQ(held, 1u);
}

}  // namespace
}  // namespace hostvisor
