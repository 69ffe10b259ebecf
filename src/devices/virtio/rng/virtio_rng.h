// virtio entropy device (virtio 1.2, 5.4): one request queue; every
// device-writable buffer the driver offers comes back filled with bytes from
// an entropy source, by default the host kernel's CSPRNG (getrandom(2)).
//
// The request has no error status, so a failing source never answers short
// or with made-up bytes: the device holds the request (it stays in flight)
// and tries again after kRetryDelay, from the event loop, until the source
// gives. Later requests are taken and held behind it, in order (at most a
// queue's worth: a head reused while held is refused as guest misuse).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <span>
#include <vector>

#include "devices/virtio/virtio_device_core.h"

namespace hostvisor {

class VirtioRng : public VirtioDeviceCore {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Bytes handed out per request at most; a driver asking for more gets a
  // short (but valid) answer, so one notification cannot hog the thread.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;
  static constexpr std::chrono::milliseconds kRetryDelay{100};

  // Fills the whole span, or fails (and then nothing of it is used).
  using EntropySource = std::function<Result<void>(std::span<uint8_t>)>;
  static Result<void> host_entropy(std::span<uint8_t> out);

  explicit VirtioRng(EntropySource source = host_entropy)
      : VirtioDeviceCore(1, kQueueSize), source_(std::move(source)) {}

  // Gives the requests held for entropy back to the ring; they are taken
  // again when the queue is next served.
  Result<void> quiesce() override;

  std::string_view name() const override { return "rng"; }
  uint32_t device_type() const override;
  uint64_t device_features() const override;

 private:
  void on_reset() override;
  void serve_queue(uint16_t queue) override;
  // Fills and returns `chain`; false if the source had nothing (the chain is untouched).
  bool answer(const DescriptorChain& chain);
  // The source is dry: holds the rest of this turn's chains too and retries later.
  void hold_the_rest();

  EntropySource source_;
  // --- guarded by the core's mutex_
  std::deque<DescriptorChain> held_;  // waiting for the source, in ring order
  bool source_failing_ = false;       // logged once per outage
  std::vector<uint8_t> random_;
};

}  // namespace hostvisor
