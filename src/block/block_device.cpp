#include "block/block_device.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "base/fd.h"
#include "block/host_file.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor::block {

Result<void> BlockDevice::check_range(uint64_t offset, uint64_t len) const {
  uint64_t size = virtual_size();
  if (offset > size || len > size - offset) {
    return Error(ErrorCode::kOutOfRange, "request at offset " + std::to_string(offset) + " length " +
                                             std::to_string(len) + " is beyond the end of the disk (" +
                                             std::to_string(size) + " bytes)");
  }
  return ok();
}

Result<void> BlockDevice::write_zeroes(uint64_t offset, uint64_t length) {
  HV_TRY(check_range(offset, length));
  constexpr size_t kChunk = 1 << 20;
  std::vector<uint8_t> zeros(std::min<uint64_t>(kChunk, length));
  while (length > 0) {
    size_t n = std::min<uint64_t>(zeros.size(), length);
    HV_TRY(write(offset, zeros.data(), n));
    offset += n;
    length -= n;
  }
  return ok();
}

// One thread per device executing queued requests in order over the synchronous API.
class BlockDevice::Worker {
 public:
  Worker(BlockDevice* device, int extra_fd) : device_(device), extra_fd_(extra_fd) {
    efd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    thread_ = std::thread([this] { run(); });
  }
  ~Worker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void submit(BlockRequest request, BlockCompletion done) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(Item{std::move(request), std::move(done), ok()});
      ++in_flight_;
    }
    cv_.notify_all();
  }
  size_t poll(bool wait) {
    std::deque<Item> ready;
    {
      std::unique_lock lock(mutex_);
      if (wait && in_flight_ > 0) finished_cv_.wait(lock, [this] { return !finished_.empty(); });
      ready.swap(finished_);
      in_flight_ -= ready.size();
    }
    for (auto& item : ready) item.done(std::move(item.result));
    return ready.size();
  }
  size_t in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
  }
  int fd() const { return efd_.get(); }

 private:
  struct Item {
    BlockRequest request;
    BlockCompletion done;
    Result<void> result;
  };
  Result<void> execute(const BlockRequest& r) {
    switch (r.op) {
      case BlockOp::kRead: return device_->readv(r.offset, r.iov);
      case BlockOp::kWrite: return device_->writev(r.offset, r.iov);
      case BlockOp::kFlush: return device_->flush();
      case BlockOp::kDiscard: return device_->discard(r.offset, r.length);
      case BlockOp::kWriteZeroes: return device_->write_zeroes(r.offset, r.length);
    }
    return Error(ErrorCode::kInternal, "unknown block operation");
  }
  void run() {
    sandbox::install_thread_filter(sandbox::ThreadKind::kIoWorker);
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Item item = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      item.result = execute(item.request);
      lock.lock();
      finished_.push_back(std::move(item));
      uint64_t one = 1;
      [[maybe_unused]] ssize_t w = ::write(efd_.get(), &one, sizeof(one));
      if (extra_fd_ >= 0) w = ::write(extra_fd_, &one, sizeof(one));
      finished_cv_.notify_all();
    }
  }

  BlockDevice* device_;
  int extra_fd_;
  mutable std::mutex mutex_;
  std::condition_variable cv_, finished_cv_;
  std::deque<Item> queue_, finished_;
  size_t in_flight_ = 0;
  bool stopping_ = false;
  UniqueFd efd_;
  std::thread thread_;
};

void BlockDevice::submit(BlockRequest request, BlockCompletion done) {
  if (!worker_) worker_ = std::make_shared<Worker>(this, worker_notify_fd_);
  worker_->submit(std::move(request), std::move(done));
}

void BlockDevice::poll_completions(bool wait) {
  if (worker_) worker_->poll(wait);
}

int BlockDevice::notify_fd() {
  if (!worker_) worker_ = std::make_shared<Worker>(this, worker_notify_fd_);
  return worker_->fd();
}

size_t BlockDevice::poll_worker(bool wait) { return worker_ ? worker_->poll(wait) : 0; }

size_t BlockDevice::requests_in_flight() const { return worker_ ? worker_->in_flight() : 0; }

void BlockDevice::shutdown_async() {
  if (!worker_) return;
  while (worker_->in_flight() > 0) worker_->poll(true);
  worker_.reset();
}

}  // namespace hostvisor::block
