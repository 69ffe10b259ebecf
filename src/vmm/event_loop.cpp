#include "vmm/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cstring>

#include "base/log.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return Error::from_errno("epoll_create1");
  UniqueFd epoll(fd);
  EventFd wake = HV_TRY(EventFd::create(0, EFD_NONBLOCK));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake.fd();
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.fd(), &ev) < 0) return Error::from_errno("epoll_ctl");
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(epoll), std::move(wake)));
}

EventLoop::~EventLoop() { stop(); }

void EventLoop::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(task));
  }
  wake_.signal();
}

void EventLoop::run_posted() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(mutex_);
    tasks.swap(posted_);
  }
  for (auto& task : tasks) task();
}

Result<void> EventLoop::add(int fd, Handler handler, uint32_t events) {
  {
    std::lock_guard lock(mutex_);
    handlers_[fd] = std::make_shared<Handler>(std::move(handler));
  }
  epoll_event ev{};
  ev.events = events ? events : EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
    std::lock_guard lock(mutex_);
    handlers_.erase(fd);
    return Error::from_errno("event loop: watching fd " + std::to_string(fd));
  }
  return {};
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  std::lock_guard lock(mutex_);
  handlers_.erase(fd);
}

void EventLoop::start() {
  thread_ = std::thread([this] { run(); });
}

void EventLoop::stop() {
  stopping_ = true;
  wake_.signal();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void EventLoop::run() {
  sandbox::install_thread_filter(sandbox::ThreadKind::kEventLoop);
  epoll_event events[32];
  while (!stopping_) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      HV_LOG_ERROR("event loop: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n && !stopping_; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_.fd()) {
        wake_.consume();
        run_posted();
        continue;
      }
      std::shared_ptr<Handler> handler;
      {
        std::lock_guard lock(mutex_);
        auto it = handlers_.find(fd);
        if (it != handlers_.end()) handler = it->second;
      }
      if (handler) (*handler)(events[i].events);
    }
  }
}

}  // namespace hostvisor
