#include "vmm/event_loop.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <vector>

namespace hostvisor {
namespace {

TEST(EventLoop, RunsHandlersOnItsThreadAndStops) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  auto efd = EventFd::create(0, EFD_NONBLOCK);
  ASSERT_TRUE(efd.ok());
  std::mutex m;
  std::condition_variable cv;
  uint64_t seen = 0;
  std::thread::id handler_thread;
  ASSERT_TRUE((*loop)
                  ->add(efd->fd(),
                        [&](uint32_t) {
                          std::lock_guard lock(m);
                          seen += efd->consume();
                          handler_thread = std::this_thread::get_id();
                          cv.notify_all();
                        })
                  .ok());
  (*loop)->start();
  efd->signal(5);
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return seen == 5; }));
  }
  EXPECT_NE(handler_thread, std::this_thread::get_id());
  (*loop)->remove(efd->fd());
  (*loop)->stop();
}

TEST(EventLoop, RunsPostedTasksInOrderOnItsThread) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  std::mutex m;
  std::condition_variable cv;
  std::vector<int> order;
  std::thread::id task_thread;
  for (int i = 0; i < 3; ++i)
    (*loop)->post([&, i] {
      std::lock_guard lock(m);
      order.push_back(i);
      task_thread = std::this_thread::get_id();
      cv.notify_all();
    });
  (*loop)->start();  // tasks posted before the start wait for it
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return order.size() == 3; }));
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_NE(task_thread, std::this_thread::get_id());
  (*loop)->stop();
  // After the stop a task is kept, never run, and destroyed with the loop.
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  (*loop)->post([token = std::move(token)] { *token = 1; });
  loop->reset();
  EXPECT_TRUE(watch.expired());
}

TEST(EventLoop, RejectsABadFd) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop.ok());
  EXPECT_FALSE((*loop)->add(-1, [](uint32_t) {}).ok());
}

}  // namespace
}  // namespace hostvisor
