#include "devices/virtio/rng/virtio_rng.h"

#include <sys/random.h>

#include <cerrno>
#include <vector>

#include "base/log.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

Result<void> VirtioRng::host_entropy(std::span<uint8_t> out) {
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

uint32_t VirtioRng::device_type() const { return virtio::kDeviceEntropy; }

uint64_t VirtioRng::device_features() const {
  // No device-specific features (5.4.3); the ring features are worth having.
  return virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx);
}

void VirtioRng::on_reset() { held_.clear(); }

Result<void> VirtioRng::quiesce() {
  run_turn([this] {
    // held_ is in ring order and the newest were popped last: put back newest first.
    while (!held_.empty()) {
      put_back(0, held_.back());
      held_.pop_back();
    }
  });
  return ok();
}

void VirtioRng::serve_queue(uint16_t) {
  // Requests held for entropy go first: the driver sees them answered in order.
  while (!held_.empty() && running()) {
    if (!answer(held_.front())) return hold_the_rest();
    held_.pop_front();
  }
  while (auto chain = next_chain(0)) {
    if (answer(*chain)) continue;
    held_.push_back(std::move(*chain));
    return hold_the_rest();
  }
}

bool VirtioRng::answer(const DescriptorChain& chain) {
  random_.resize(std::min<uint64_t>(chain.writable_bytes(), kMaxBytesPerRequest));
  if (auto filled = source_(random_); !filled) {
    if (!std::exchange(source_failing_, true))
      HV_LOG_WARN("virtio-rng: no entropy, holding the guest's requests: {}", filled.error().message());
    return false;
  }
  if (std::exchange(source_failing_, false)) HV_LOG_INFO("virtio-rng: entropy is back");
  auto written = chain.write(memory(), 0, random_);
  if (!written) {
    fail_guest_misuse(written.error());  // pop() checked the buffers: the guest's RAM map changed
    return true;
  }
  complete(0, chain, *written);
  return true;
}

void VirtioRng::hold_the_rest() {
  while (auto chain = next_chain(0)) held_.push_back(std::move(*chain));
  retry_later(0, kRetryDelay);
}

}  // namespace hostvisor
