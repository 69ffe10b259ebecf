#include "vmm/guest_clock_sync.h"

#include <sys/random.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "agent/hostvisor_agent_client.h"
#include "agent/qga/qga_client.h"
#include "base/log.h"
#include "sandbox/seccomp/thread_filter.h"

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

// What a command run for the host printed, kept short for an error message
// (the guest decides how much it prints).
constexpr size_t kMaxCommandOutput = 512;

// Gives each guest interface that has a change's snapshot MAC its clone MAC,
// with the guest's own `ip` (busybox's or iproute2's; virtio-net changes a
// live interface's address, and the guest announces it with a gratuitous
// ARP). The agent has no operation of its own for it, and one would change
// the guest image that every restore test shares. An error is the agent's
// (not there yet: try again); what the guest cannot do is logged.
Result<void> move_interfaces(agent::AgentClient& client, const std::vector<GuestClockSync::MacChange>& macs) {
  const agent::AgentInfo info = HV_TRY(client.info());
  for (const auto& change : macs) {
    const std::string snapshot_mac = net::format_mac_address(change.snapshot);
    const std::string clone_mac = net::format_mac_address(change.clone);
    const agent::InterfaceInfo* interface = nullptr;
    bool done = false;
    for (const auto& candidate : info.interfaces) {
      auto mac = net::parse_mac_address(candidate.mac);
      if (!mac) continue;
      if (*mac == change.clone) done = true;
      if (*mac == change.snapshot) interface = &candidate;
    }
    if (done) continue;
    if (!interface) {
      HV_LOG_WARN("guest agent: no interface in the clone has the snapshot's MAC {}; its NIC's new {} is not in use",
                  snapshot_mac, clone_mac);
      continue;
    }
    std::string output;
    agent::ExecStreams streams;
    auto keep = [&output](std::span<const uint8_t> bytes) {
      const size_t room = kMaxCommandOutput - std::min(output.size(), kMaxCommandOutput);
      output.append(reinterpret_cast<const char*>(bytes.data()), std::min(bytes.size(), room));
    };
    streams.on_stdout = keep;
    streams.on_stderr = keep;
    const agent::ExecResult result = HV_TRY(client.exec(
        agent::ExecRequest{.argv = {"ip", "link", "set", "dev", interface->name, "address", clone_mac}}, streams));
    if (result.status() != 0) {
      HV_LOG_WARN("guest agent: `ip link set dev {} address {}` failed in the clone (status {}): {}", interface->name,
                  clone_mac, result.status(), output);
      continue;
    }
    HV_LOG_INFO("guest agent: the clone's {} now sends from {}, its NIC's new MAC (it had the snapshot's {})",
                interface->name, clone_mac, snapshot_mac);
  }
  return {};
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

void GuestClockSync::request(const std::string& reason, bool reseed, std::vector<MacChange> macs) {
  {
    std::lock_guard lock(mutex_);
    pending_reason_ = pending_reason_.empty() ? reason : pending_reason_ + ", " + reason;
    pending_reseed_ |= reseed;
    pending_macs_.insert(pending_macs_.end(), macs.begin(), macs.end());
  }
  wake_.notify_all();
}

void GuestClockSync::thread_main() {
  sandbox::install_thread_filter(sandbox::ThreadKind::kEventLoop);
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
    std::vector<MacChange> macs = std::exchange(pending_macs_, {});
    lock.unlock();
    sync(reason, reseed, std::move(macs));
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

void GuestClockSync::sync(const std::string& reason, bool reseed, std::vector<MacChange> macs) {
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
    if (!macs.empty()) {
      if (auto moved = move_interfaces(client, macs); !moved) {
        last = moved.error();
        std::this_thread::sleep_for(kRetryDelay);
        continue;
      }
      macs.clear();
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
  if (!macs.empty())
    HV_LOG_WARN("guest agent: could not give the clone's interfaces their NICs' new MACs: {}", last.message());
  HV_LOG_WARN("guest agent: could not set the guest's clock after {}: {}", reason, last.message());
}

}  // namespace hostvisor
