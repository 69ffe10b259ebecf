#include "devices/virtio/reschedule_timer.h"

#include <gtest/gtest.h>
#include <poll.h>

namespace hostvisor {
namespace {

using namespace std::chrono_literals;

bool readable_within(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

TEST(RescheduleTimer, ArmedNowIsReadableAtOnceAndConsumedOnce) {
  auto timer = RescheduleTimer::create();
  ASSERT_TRUE(timer.ok()) << timer.error().message();
  EXPECT_FALSE(readable_within(timer->fd(), 0));
  EXPECT_FALSE(timer->consume());
  timer->arm(0ns);
  ASSERT_TRUE(readable_within(timer->fd(), 1000));
  EXPECT_TRUE(timer->consume());
  EXPECT_FALSE(readable_within(timer->fd(), 0));
}

TEST(RescheduleTimer, DelayAndDisarm) {
  auto timer = RescheduleTimer::create();
  ASSERT_TRUE(timer.ok());
  timer->arm(200ms);
  EXPECT_FALSE(readable_within(timer->fd(), 20)) << "fired long before its delay";
  timer->disarm();
  EXPECT_FALSE(readable_within(timer->fd(), 300)) << "fired after disarm";
  timer->arm(10ms);
  EXPECT_TRUE(readable_within(timer->fd(), 1000));
}

}  // namespace
}  // namespace hostvisor
