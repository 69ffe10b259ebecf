#include "devices/virtio/virtio_device_core.h"

#include <bit>
#include <string>

#include "base/log.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

namespace {
bool valid_queue_size(uint16_t size) { return size != 0 && std::has_single_bit(size) && size <= virtio::kMaxQueueSize; }
}  // namespace

VirtioDeviceCore::VirtioDeviceCore(uint16_t queue_count, uint16_t queue_max_size)
    : queue_count_(queue_count),
      queue_max_size_(valid_queue_size(queue_max_size) ? queue_max_size : kDefaultQueueSize),
      timer_(RescheduleTimer::create()) {}

std::string VirtioDeviceCore::device_label() const { return "virtio-" + std::string(name()); }

Result<void> VirtioDeviceCore::activate(const VirtioActivation& activation) {
  const uint16_t count = queue_count();
  if (!activation.memory || !activation.interrupt || activation.queues.size() != count ||
      activation.enabled.size() != count)
    return Error(ErrorCode::kInternal,
                 device_label() + " activated without its " + std::to_string(count) + " queue(s)");
  // Without a way to be called again the bounded drain would strand chains.
  if (!timer_) return timer_.error().with_context(device_label());
  std::lock_guard lock(mutex_);
  active_ = activation;
  failed_ = false;
  turns_.assign(count, QueueTurn{});
  begin_turn_locked();
  auto started = on_activate();
  if (!started) {
    active_.reset();
    return started.error().with_context(device_label());
  }
  end_turn_locked();
  return ok();
}

void VirtioDeviceCore::reset() {
  std::lock_guard lock(mutex_);
  if (active_) on_reset();
  active_.reset();
  failed_ = false;
  turns_.clear();
  timer_expiry_.reset();
  if (timer_) timer_->disarm();
}

Result<void> VirtioDeviceCore::process_queue(uint16_t queue) {
  std::lock_guard lock(mutex_);
  if (!serving(queue)) return ok();
  begin_turn_locked();
  serve_queue(queue);
  end_turn_locked();
  return ok();  // guest errors are signalled, host errors answered: none is returned
}

void VirtioDeviceCore::run_rescheduled() {
  std::lock_guard lock(mutex_);
  if (!timer_) return;
  // A call without an expiry (a spurious wake-up) keeps the pending deadline.
  if (timer_->consume()) timer_expiry_.reset();
  if (timer_expiry_) return;
  begin_turn_locked();
  for (uint16_t q = 0; q < turns_.size(); ++q) {
    if (!turns_[q].rescheduled) continue;
    turns_[q].rescheduled = false;
    if (serving(q)) serve_queue(q);
  }
  end_turn_locked();
}

bool VirtioDeviceCore::serving(uint16_t queue) const {
  return running() && queue < active_->enabled.size() && active_->enabled[queue];
}

std::optional<DescriptorChain> VirtioDeviceCore::next_chain(uint16_t queue) {
  if (!serving(queue)) return std::nullopt;
  Virtqueue& q = active_->queues[queue];
  QueueTurn& turn = turns_[queue];
  if (turn.taken >= q.size()) {
    // The budget is spent: what is left is served on a later turn.
    auto more = q.has_available(memory());
    if (!more || *more) reschedule_locked(queue, std::chrono::nanoseconds(0));
    return std::nullopt;
  }
  auto popped = q.pop(memory());
  if (!popped) {
    fail_guest_misuse(popped.error());
    return std::nullopt;
  }
  if (popped->has_value()) ++turn.taken;
  return std::move(popped).value();
}

std::optional<DescriptorChain> VirtioDeviceCore::next_writable_chain(uint16_t queue) {
  auto chain = next_chain(queue);
  if (chain && chain->writable_bytes() == 0) {
    fail_guest_misuse(Error(ErrorCode::kGuest, "buffer at descriptor " + std::to_string(chain->head()) + " of queue " +
                                                   std::to_string(queue) +
                                                   " is not device-writable; the driver is broken or hostile"));
    return std::nullopt;
  }
  return chain;
}

bool VirtioDeviceCore::complete(uint16_t queue, const DescriptorChain& chain, uint64_t written) {
  if (!serving(queue)) return false;
  // A chain is at most Virtqueue::kMaxChainBytes long, so this always fits.
  auto r = active_->queues[queue].add_used(memory(), chain, static_cast<uint32_t>(written));
  if (!r) {
    if (r.error().code() == ErrorCode::kInternal) {
      // Returning a chain the device does not hold: our bug, not the guest's.
      HV_LOG_ERROR("{}: {}", device_label(), r.error().message());
    } else {
      fail_guest_misuse(r.error());  // the used ring is not where the driver said
    }
    return false;
  }
  turns_[queue].returned = true;
  return true;
}

std::optional<uint16_t> VirtioDeviceCore::driver_avail_idx(uint16_t queue) {
  if (!serving(queue)) return std::nullopt;
  auto idx = active_->queues[queue].avail_idx(memory());
  if (!idx) return std::nullopt;
  return *idx;
}

void VirtioDeviceCore::request_notify_at(uint16_t queue, uint16_t idx) {
  if (!serving(queue)) return;
  // The rings were checked to lie in RAM when the queue was set up.
  (void)active_->queues[queue].request_notify_at(memory(), idx);
}

void VirtioDeviceCore::put_back(uint16_t queue, const DescriptorChain& chain) {
  if (!active_) return;
  active_->queues[queue].unpop(chain);
  if (turns_[queue].taken > 0) --turns_[queue].taken;
}

void VirtioDeviceCore::fail_guest_misuse(const Error& error) {
  if (!active_ || failed_) return;
  failed_ = true;
  active_->interrupt->signal_needs_reset(error.with_context(device_label()));
}

void VirtioDeviceCore::retry_later(uint16_t queue, std::chrono::milliseconds delay) { reschedule_locked(queue, delay); }

void VirtioDeviceCore::signal_config_change() {
  if (running()) active_->interrupt->signal_config_change();
}

void VirtioDeviceCore::begin_turn_locked() {
  for (QueueTurn& turn : turns_) {
    turn.taken = 0;
    turn.returned = false;
  }
}

void VirtioDeviceCore::end_turn_locked() {
  if (!running()) return;
  for (uint16_t q = 0; q < turns_.size(); ++q) {
    if (!turns_[q].returned) continue;
    turns_[q].returned = false;
    // If the suppression fields cannot be read, interrupt: a spurious
    // interrupt is harmless, a missing one hangs the driver.
    auto needed = active_->queues[q].needs_interrupt(memory());
    if (!needed || *needed) active_->interrupt->signal_used(q);
  }
}

void VirtioDeviceCore::reschedule_locked(uint16_t queue, std::chrono::nanoseconds delay) {
  if (!timer_ || queue >= turns_.size()) return;
  turns_[queue].rescheduled = true;
  const auto expiry = std::chrono::steady_clock::now() + delay;
  // Never push a pending expiry later: an earlier one serves this queue too.
  if (timer_expiry_ && *timer_expiry_ <= expiry) return;
  timer_expiry_ = expiry;
  timer_->arm(delay);
}

}  // namespace hostvisor
