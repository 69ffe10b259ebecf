#include "block/engine/thread_pool_engine.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor::block {

Result<std::unique_ptr<ThreadPoolEngine>> ThreadPoolEngine::create(unsigned threads) {
  std::unique_ptr<ThreadPoolEngine> engine(new ThreadPoolEngine());
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return Error::from_errno("eventfd");
  engine->notify_.reset(efd);
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; ++i) engine->workers_.emplace_back([e = engine.get()] { e->worker(); });
  return engine;
}

ThreadPoolEngine::~ThreadPoolEngine() {
  while (in_flight() > 0) reap(true);
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
}

int64_t ThreadPoolEngine::run(const IoRequest& r) {
  ssize_t n = 0;
  switch (r.op) {
    case IoOp::kRead: n = preadv(r.fd, r.iov, r.iovcnt, static_cast<off_t>(r.offset)); break;
    case IoOp::kWrite: n = pwritev(r.fd, r.iov, r.iovcnt, static_cast<off_t>(r.offset)); break;
    case IoOp::kFlush: n = fdatasync(r.fd); break;
    case IoOp::kDiscard:
      n = fallocate(r.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(r.offset),
                    static_cast<off_t>(r.length));
      break;
    case IoOp::kZeroRange:
      n = fallocate(r.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(r.offset),
                    static_cast<off_t>(r.length));
      break;
  }
  return n < 0 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(n);
}

void ThreadPoolEngine::worker() {
  sandbox::install_thread_filter(sandbox::ThreadKind::kIoWorker);
  std::unique_lock lock(mutex_);
  for (;;) {
    work_ready_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) return;
    Job job = std::move(pending_.front());
    pending_.pop_front();
    lock.unlock();
    job.result = run(job.request);
    lock.lock();
    finished_.push_back(std::move(job));
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = write(notify_.get(), &one, sizeof(one));
    job_done_.notify_all();
  }
}

void ThreadPoolEngine::submit(const IoRequest& request, IoCompletion done) {
  {
    std::lock_guard lock(mutex_);
    pending_.push_back(Job{request, std::move(done), 0});
    ++in_flight_;
  }
  work_ready_.notify_one();
}

size_t ThreadPoolEngine::in_flight() const {
  std::lock_guard lock(mutex_);
  return in_flight_;
}

void ThreadPoolEngine::reap(bool wait) {
  std::deque<Job> ready;
  {
    std::unique_lock lock(mutex_);
    if (wait && in_flight_ > 0) job_done_.wait(lock, [this] { return !finished_.empty(); });
    ready.swap(finished_);
    in_flight_ -= ready.size();
  }
  for (auto& job : ready) job.done(job.result);
}

}  // namespace hostvisor::block
