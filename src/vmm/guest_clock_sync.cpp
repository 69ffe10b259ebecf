#include "vmm/guest_clock_sync.h"

#include <sys/random.h>
#include <time.h>

#include <chrono>
#include <vector>

#include "agent/hostvisor_agent_client.h"
#include "agent/qga/qga_client.h"
#include "base/log.h"

namespace hostvisor {
namespace {

using namespace std::chrono_literals;

// Until the agent answers: a restored guest's driver is resetting its vsock
// streams, a booting one may not have started the agent yet.
constexpr int kAttempts = 20;
constexpr auto kRetryDelay = 500ms;
constexpr size_t kReseedBytes = 64;

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

GuestClockSync::GuestClockSync(Agents agents) : agents_(std::move(agents)) {
  thread_ = std::thread([this] { thread_main(); });
}

GuestClockSync::~GuestClockSync() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void GuestClockSync::request(const std::string& reason, bool reseed) {
  {
    std::lock_guard lock(mutex_);
    pending_reason_ = pending_reason_.empty() ? reason : pending_reason_ + ", " + reason;
    pending_reseed_ |= reseed;
  }
  wake_.notify_all();
}

void GuestClockSync::thread_main() {
  // CLOCK_BOOTTIME goes on through a host suspend, unlike the monotonic clock.
  int64_t last_tick = clock_ns(CLOCK_BOOTTIME);
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, 1s, [this] { return stopping_ || !pending_reason_.empty(); });
    if (stopping_) break;
    const int64_t now = clock_ns(CLOCK_BOOTTIME);
    const int64_t gap_s = (now - last_tick) / 1'000'000'000;
    last_tick = now;
    if (gap_s > 1 + kStallSeconds && pending_reason_.empty())
      pending_reason_ = "a host stall of " + std::to_string(gap_s) + " s";
    if (pending_reason_.empty()) continue;
    const std::string reason = std::exchange(pending_reason_, "");
    const bool reseed = std::exchange(pending_reseed_, false);
    lock.unlock();
    sync(reason, reseed);
    lock.lock();
    last_tick = clock_ns(CLOCK_BOOTTIME);
  }
}

std::unique_ptr<agent::AgentClient> GuestClockSync::open_agent() {
  // Probe the hostvisor agent only when there is another agent to turn to;
  // the probe's connection is dropped unused, as `hostvisor agent` does.
  if (agents_.hostvisor && (!agents_.qemu_ga || agents_.hostvisor().ok()))
    return std::make_unique<agent::HostvisorAgentClient>(agents_.hostvisor, 5s);
  return std::make_unique<agent::qga::QgaClient>(agents_.qemu_ga, 5s);
}

void GuestClockSync::sync(const std::string& reason, bool reseed) {
  Error last(ErrorCode::kInternal, "");
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    const std::unique_ptr<agent::AgentClient> opened = open_agent();
    agent::AgentClient& client = *opened;
    if (reseed) {
      std::vector<uint8_t> entropy(kReseedBytes);
      if (::getrandom(entropy.data(), entropy.size(), 0) != static_cast<ssize_t>(entropy.size())) {
        HV_LOG_WARN("guest agent: no entropy from the host for the clone's RNG");
        reseed = false;
      } else if (auto reseeded = client.reseed_rng(entropy); reseeded.ok()) {
        HV_LOG_INFO("guest agent: reseeded the guest's RNG with {} bytes from the host after {}", kReseedBytes, reason);
        reseed = false;
      } else if (reseeded.error().code() == ErrorCode::kUnsupported) {
        HV_LOG_WARN("guest agent: the clone's RNG is not reseeded: {}", reseeded.error().message());
        reseed = false;
      } else {
        last = reseeded.error();
        std::this_thread::sleep_for(kRetryDelay);
        continue;
      }
    }
    auto set = client.set_time(clock_ns(CLOCK_REALTIME));
    if (set.ok()) {
      if (auto* hostvisor = dynamic_cast<agent::HostvisorAgentClient*>(&client))
        HV_LOG_INFO("guest agent: set the guest's clock to the host's after {} (it was {:+.3f} s off)", reason,
                    static_cast<double>(hostvisor->last_clock_offset_ns()) / 1e9);
      else
        HV_LOG_INFO("guest agent ({}): set the guest's clock to the host's after {}", client.name(), reason);
      return;
    }
    last = set.error();
    if (last.code() == ErrorCode::kUnsupported) break;
    std::this_thread::sleep_for(kRetryDelay);
  }
  HV_LOG_WARN("guest agent: could not set the guest's clock after {}: {}", reason, last.message());
}

}  // namespace hostvisor
