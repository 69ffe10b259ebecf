#include "hv/emu/platform/platform_timers.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

namespace hostvisor::emu {
namespace {

TEST(PlatformTimers, FiresDueTimersOnceInAnyOrder) {
  ManualClock clock(1000);
  PlatformTimers timers(clock);
  std::vector<int> fired;
  const auto a = timers.add([&](uint64_t) { fired.push_back(1); });
  const auto b = timers.add([&](uint64_t) { fired.push_back(2); });
  EXPECT_FALSE(timers.next_deadline().has_value());
  timers.arm(a, 3000);
  timers.arm(b, 2000);
  EXPECT_EQ(timers.next_deadline(), std::optional<uint64_t>(2000));
  EXPECT_EQ(timers.run_due(), 0u);
  clock.set(2500);
  EXPECT_EQ(timers.run_due(), 1u);
  EXPECT_EQ(fired, std::vector<int>{2});
  EXPECT_FALSE(timers.deadline(b).has_value());  // disarmed before its callback
  clock.set(10000);
  EXPECT_EQ(timers.run_due(), 1u);
  EXPECT_EQ(timers.run_due(), 0u);
  EXPECT_EQ(fired, (std::vector<int>{2, 1}));
  timers.arm(a, 20000);
  timers.disarm(a);
  clock.set(30000);
  EXPECT_EQ(timers.run_due(), 0u);
  timers.arm(999, 1);  // unknown ids are ignored
  EXPECT_FALSE(timers.deadline(999).has_value());
}

TEST(PlatformTimers, CallbacksMayRearmThemselves) {
  ManualClock clock;
  PlatformTimers timers(clock);
  int count = 0;
  PlatformTimers::TimerId id = 0;
  id = timers.add([&](uint64_t now) {
    ++count;
    timers.arm(id, now + 100);
  });
  timers.arm(id, 100);
  for (uint64_t t = 100; t <= 1000; t += 100) {
    clock.set(t);
    timers.run_due();
  }
  EXPECT_EQ(count, 10);
  EXPECT_EQ(timers.next_deadline(), std::optional<uint64_t>(1100));
}

TEST(PlatformTimers, HostThreadFiresOnTheRealClock) {
  HostClock clock;
  PlatformTimers timers(clock);
  std::mutex m;
  std::condition_variable cv;
  std::vector<uint64_t> fired_at;
  PlatformTimers::TimerId id = 0;
  id = timers.add([&](uint64_t now) {
    std::lock_guard lock(m);
    fired_at.push_back(now);
    if (fired_at.size() < 3) timers.arm(id, now + 2'000'000);
    cv.notify_all();
  });
  ASSERT_TRUE(timers.start().ok());
  EXPECT_FALSE(timers.start().ok());  // already running
  const uint64_t armed_at = clock.now_ns();
  timers.arm(id, armed_at + 2'000'000);
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return fired_at.size() == 3; }));
  }
  EXPECT_GE(fired_at[0], armed_at + 2'000'000);  // never early
  EXPECT_GE(fired_at[2], armed_at + 6'000'000);
  timers.stop();
  timers.stop();  // idempotent
}

}  // namespace
}  // namespace hostvisor::emu
