#include "hv/emu/platform/platform_timers.h"
#include "sandbox/seccomp/thread_filter.h"

#include <chrono>
#include <vector>

namespace hostvisor::emu {

PlatformTimers::~PlatformTimers() { stop(); }

PlatformTimers::TimerId PlatformTimers::add(Callback callback) {
  std::lock_guard lock(mutex_);
  timers_.push_back(Timer{std::move(callback), std::nullopt});
  return static_cast<TimerId>(timers_.size() - 1);
}

void PlatformTimers::arm(TimerId id, uint64_t deadline_ns) {
  {
    std::lock_guard lock(mutex_);
    if (id >= timers_.size()) return;
    timers_[id].deadline_ns = deadline_ns;
  }
  changed_.notify_all();
}

void PlatformTimers::disarm(TimerId id) {
  std::lock_guard lock(mutex_);
  if (id < timers_.size()) timers_[id].deadline_ns.reset();
  // No notification: the thread waking early for a disarmed timer is harmless.
}

std::optional<uint64_t> PlatformTimers::deadline(TimerId id) const {
  std::lock_guard lock(mutex_);
  if (id >= timers_.size()) return std::nullopt;
  return timers_[id].deadline_ns;
}

std::optional<uint64_t> PlatformTimers::next_deadline() const {
  std::lock_guard lock(mutex_);
  std::optional<uint64_t> earliest;
  for (const Timer& t : timers_) {
    if (t.deadline_ns && (!earliest || *t.deadline_ns < *earliest)) earliest = t.deadline_ns;
  }
  return earliest;
}

size_t PlatformTimers::run_due() {
  const uint64_t now = clock_.now_ns();
  // Collect under the lock, call without it: callbacks re-arm their timers
  // and take their owners' locks.
  std::vector<Callback*> due;
  {
    std::lock_guard lock(mutex_);
    for (Timer& t : timers_) {
      if (t.deadline_ns && *t.deadline_ns <= now) {
        t.deadline_ns.reset();
        due.push_back(&t.callback);
      }
    }
  }
  // Timers are never removed and a deque never moves its elements on
  // push_back, so the pointers stay valid without the lock.
  for (Callback* cb : due) (*cb)(now);
  return due.size();
}

Result<void> PlatformTimers::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return Error(ErrorCode::kBusy, "platform timer thread already running");
  stopping_ = false;
  try {
    thread_ = std::thread([this] { thread_main(); });
  } catch (const std::system_error& e) {
    return Error(ErrorCode::kIo, std::string("cannot start the platform timer thread: ") + e.what());
  }
  return {};
}

void PlatformTimers::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void PlatformTimers::thread_main() {
  sandbox::install_thread_filter(sandbox::ThreadKind::kEventLoop);
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    std::optional<uint64_t> earliest;
    for (const Timer& t : timers_) {
      if (t.deadline_ns && (!earliest || *t.deadline_ns < *earliest)) earliest = t.deadline_ns;
    }
    const uint64_t now = clock_.now_ns();
    if (!earliest) {
      changed_.wait(lock);
      continue;
    }
    if (*earliest > now) {
      // Re-evaluate on any arm() (a new earlier deadline) or when due.
      changed_.wait_for(lock, std::chrono::nanoseconds(*earliest - now));
      continue;
    }
    lock.unlock();
    run_due();
    lock.lock();
  }
}

}  // namespace hostvisor::emu
