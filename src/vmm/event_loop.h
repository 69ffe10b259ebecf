// The device event loop: one thread waiting on file descriptors (stdin,
// signals, later eventfds of virtio queues and network backends) with epoll
// and running their handlers. Other threads talk to it only through fds.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor {

class EventLoop {
 public:
  // Called with the epoll event mask (EPOLLIN, EPOLLHUP, ...).
  using Handler = std::function<void(uint32_t events)>;

  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();

  // Watches fd for `events` (EPOLLIN by default). The handler runs on the
  // loop thread. fd must stay open until remove().
  Result<void> add(int fd, Handler handler, uint32_t events = 0);
  void remove(int fd);

  // Runs `task` on the loop thread, soon (in order with other posted tasks).
  // Thread-safe. A task still queued when the loop stops is destroyed
  // without running.
  void post(std::function<void()> task);

  void start();  // runs the loop on its own thread
  void stop();   // thread-safe; joins the loop thread

 private:
  EventLoop(UniqueFd epoll, EventFd wake) : epoll_(std::move(epoll)), wake_(std::move(wake)) {}
  void run();
  void run_posted();

  UniqueFd epoll_;
  EventFd wake_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::unordered_map<int, std::shared_ptr<Handler>> handlers_;
  std::vector<std::function<void()>> posted_;  // under mutex_
  std::thread thread_;
};

}  // namespace hostvisor
