// Thread-pool engine: the fallback where io_uring is unavailable. Worker
// threads run the blocking system calls (preadv, pwritev, fdatasync,
// fallocate); their results queue up until the owner calls reap().
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "block/io_engine.h"

namespace hostvisor::block {

class ThreadPoolEngine final : public IoEngine {
 public:
  static Result<std::unique_ptr<ThreadPoolEngine>> create(unsigned threads);
  ~ThreadPoolEngine() override;

  const char* name() const override { return "thread-pool"; }
  void submit(const IoRequest& request, IoCompletion done) override;
  void reap(bool wait) override;
  size_t in_flight() const override;
  int notify_fd() const override { return notify_.get(); }

 private:
  struct Job {
    IoRequest request;
    IoCompletion done;
    int64_t result = 0;
  };
  ThreadPoolEngine() = default;
  void worker();
  static int64_t run(const IoRequest& request);

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable job_done_;
  std::deque<Job> pending_;
  std::deque<Job> finished_;
  size_t in_flight_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  UniqueFd notify_;
};

}  // namespace hostvisor::block
