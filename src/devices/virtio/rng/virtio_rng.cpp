#include "devices/virtio/rng/virtio_rng.h"

#include <sys/random.h>

#include <cerrno>
#include <vector>

#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

namespace {
Result<void> fill_random(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("getrandom for virtio-rng");
    }
    done += static_cast<size_t>(n);
  }
  return ok();
}
}  // namespace

uint32_t VirtioRng::device_type() const { return virtio::kDeviceEntropy; }

uint64_t VirtioRng::device_features() const {
  // No device-specific features (5.4.3); the ring features are worth having.
  return virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx);
}

Result<void> VirtioRng::activate(const VirtioActivation& activation) {
  if (!activation.memory || !activation.interrupt || activation.queues.size() != 1 || activation.enabled.size() != 1)
    return Error(ErrorCode::kInternal, "virtio-rng activated without its queue");
  std::lock_guard lock(mutex_);
  active_ = activation;
  return ok();
}

void VirtioRng::reset() {
  std::lock_guard lock(mutex_);
  active_.reset();
}

Result<void> VirtioRng::process_queue(uint16_t queue) {
  std::lock_guard lock(mutex_);
  if (!active_ || queue != 0 || !active_->enabled[0]) return ok();
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[0];
  std::vector<uint8_t> random;
  bool used = false;
  for (;;) {
    auto chain = HV_TRY(q.pop(memory));
    if (!chain) break;
    const uint64_t want = std::min<uint64_t>(chain->writable_bytes(), kMaxBytesPerRequest);
    random.resize(want);
    HV_TRY(fill_random(random));
    const uint64_t written = HV_TRY(chain->write(memory, 0, random));
    HV_TRY(q.add_used(memory, *chain, static_cast<uint32_t>(written)));
    used = true;
  }
  if (used && HV_TRY(q.needs_interrupt(memory))) active_->interrupt->signal_used(0);
  return ok();
}

}  // namespace hostvisor
