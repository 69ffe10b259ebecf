#include "vmm/terminal_writer.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

#include "base/log.h"
#include "base/log_rate_limit.h"

namespace hostvisor {

namespace {

// At most this much per write(2) on the direct path: a pipe or terminal that
// polls writable takes a write this small without blocking.
constexpr size_t kDirectChunk = 4096;
}  // namespace

struct TerminalWriter::Shared {
  explicit Shared(int fd) : fd(fd) {}
  const int fd;
  std::mutex mutex;
  std::condition_variable work;     // the thread: bytes wait, or stop
  std::condition_variable drained;  // the destructor: the backlog went out
  std::deque<uint8_t> backlog;
  bool thread_writing = false;  // the thread holds bytes taken off the backlog
  bool broken = false;          // the terminal is gone (EPIPE, EIO): drop all
  bool stop = false;
  bool dropping = false;  // the backlog filled up; drop until it is empty
  uint64_t dropped = 0;

  // Writes what the terminal takes now without waiting; returns how much.
  size_t write_now(std::span<const uint8_t> bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, 0);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      const ssize_t n = ::write(fd, bytes.data() + done, std::min(bytes.size() - done, kDirectChunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) {
        broken = true;
        return bytes.size();
      }
      done += static_cast<size_t>(n);
    }
    return done;
  }

  // Blocking, on the thread: the whole chunk, waiting for the terminal.
  bool write_all_waiting(const std::vector<uint8_t>& chunk) {
    size_t done = 0;
    while (done < chunk.size()) {
      const ssize_t n = ::write(fd, chunk.data() + done, chunk.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 100);  // an fd someone made non-blocking
        continue;
      }
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  void run() {
    std::unique_lock lock(mutex);
    for (;;) {
      work.wait(lock, [&] { return stop || !backlog.empty(); });
      if (backlog.empty()) return;  // stopping, and all went out
      const size_t take = std::min(backlog.size(), kWriteChunk);
      std::vector<uint8_t> chunk(backlog.begin(), backlog.begin() + static_cast<std::ptrdiff_t>(take));
      backlog.erase(backlog.begin(), backlog.begin() + static_cast<std::ptrdiff_t>(take));
      thread_writing = true;
      lock.unlock();
      const bool written = write_all_waiting(chunk);
      lock.lock();
      thread_writing = false;
      if (!written) {
        broken = true;
        backlog.clear();
      }
      if (backlog.empty()) drained.notify_all();
    }
  }
};

TerminalWriter::TerminalWriter(int fd) : shared_(std::make_shared<Shared>(fd)) {
  thread_ = std::thread([shared = shared_] { shared->run(); });
}

TerminalWriter::~TerminalWriter() {
  std::unique_lock lock(shared_->mutex);
  shared_->stop = true;
  shared_->work.notify_all();
  const bool drained = shared_->drained.wait_for(lock, kDrainTimeout,
                                                 [&] { return shared_->backlog.empty() && !shared_->thread_writing; });
  lock.unlock();
  if (drained) {
    thread_.join();
  } else {
    HV_LOG_WARN("the terminal did not take the last {} bytes of the guest's console output; they are lost",
                shared_->backlog.size());
    thread_.detach();  // blocked in write(); the process is ending
  }
}

void TerminalWriter::write(std::span<const uint8_t> bytes) {
  std::lock_guard lock(shared_->mutex);
  if (shared_->broken) return;
  const bool idle = shared_->backlog.empty() && !shared_->thread_writing;
  // Once output is dropped, it is dropped until the terminal has taken the
  // whole backlog: one gap, not a gap every time the thread frees a chunk.
  if (idle) shared_->dropping = false;
  if (shared_->dropping) {
    shared_->dropped += bytes.size();
    return;
  }
  // Straight out while nothing waits, so the output keeps its order.
  if (idle) bytes = bytes.subspan(shared_->write_now(bytes));
  if (bytes.empty() || shared_->broken) return;
  const size_t room = kMaxBacklog - shared_->backlog.size();
  const size_t kept = std::min(room, bytes.size());
  shared_->backlog.insert(shared_->backlog.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(kept));
  if (kept < bytes.size()) {
    shared_->dropping = true;
    shared_->dropped += bytes.size() - kept;
    HV_LOG_WARN_LIMITED("the terminal is not reading the guest's console output: {} bytes dropped so far",
                        shared_->dropped);
  }
  shared_->work.notify_one();
}

uint64_t TerminalWriter::dropped() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->dropped;
}

size_t TerminalWriter::backlog() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->backlog.size();
}

}  // namespace hostvisor
