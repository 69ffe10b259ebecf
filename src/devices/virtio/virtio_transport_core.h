// The transport-independent half of a virtio transport (virtio 1.2, 2-3):
// feature negotiation, the device status state machine, per-queue
// configuration, validation of the queue layout into Virtqueues, device
// activation at DRIVER_OK, reset, and dispatch of queue notifications.
// virtio-pci and virtio-mmio differ only in how the guest reaches these
// registers and how interrupts are delivered.
//
// Not thread-safe except status(): the transport serialises guest register
// accesses with its lock; DEVICE_NEEDS_RESET may be set from device threads.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "base/state_codec.h"
#include "devices/virtio/virtio_device.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class VirtioTransportCore {
 public:
  struct QueueConfig {
    uint16_t size = 0;
    bool enabled = false;
    uint64_t desc = 0, driver = 0, device = 0;
  };

  // Checks what every transport needs of a device (queue counts and sizes).
  static Result<void> validate(const VirtioDevice& device, uint16_t max_queues);

  // `interrupt` receives signal_needs_reset for driver errors found here and
  // is handed to the device at activation; both must outlive the core.
  VirtioTransportCore(std::shared_ptr<VirtioDevice> device, GuestMemory& memory, VirtioInterrupt& interrupt);
  // Withdraws this transport's rings from the memory's device areas.
  ~VirtioTransportCore();
  VirtioTransportCore(const VirtioTransportCore&) = delete;
  VirtioTransportCore& operator=(const VirtioTransportCore&) = delete;

  VirtioDevice& device() { return *device_; }
  uint16_t queue_count() const { return queue_count_; }

  // Device-specific bits, plus the ring features we implement, plus VERSION_1.
  uint64_t offered_features() const;
  uint32_t device_features_word(uint32_t select) const;
  uint32_t driver_features_word(uint32_t select) const;
  uint64_t driver_features() const { return driver_features_; }
  // Ignored once FEATURES_OK is set (the features are final then).
  void set_driver_features_word(uint32_t select, uint32_t value);

  uint8_t status() const { return status_.load(); }
  // A driver write to the status register. Returns true if it was a reset
  // (0), so the transport clears its own interrupt state too.
  bool write_status(uint8_t value);
  // Sets DEVICE_NEEDS_RESET; true if it was not set already (then the
  // transport raises the configuration change interrupt).
  bool mark_needs_reset();

  // Queue registers of queue `index` (nullptr if it does not exist).
  QueueConfig* queue(uint16_t index) { return index < queue_count_ ? &queue_config_[index] : nullptr; }
  uint16_t queue_max_size(uint16_t index) const;
  // The driver enabled queue `index`: validates its layout; on failure the
  // queue stays disabled and the device needs a reset.
  void enable_queue(uint16_t index);

  // The driver notified queue `index`; runs the device if it is live.
  void notify(uint16_t index);

  // Snapshot. Device-specific state is the device's own business.
  struct QueueState {
    QueueConfig config;
    Virtqueue::State ring;
  };
  struct State {
    uint64_t driver_features = 0;
    uint8_t status = 0;
    bool activated = false;
    std::vector<QueueState> queues;
  };
  State save() const;
  // Resets the device, then re-validates every enabled queue against guest
  // memory and re-activates the device if the snapshot had it running. A
  // state that does not fit (queue count, sizes, rings outside RAM) is
  // rejected as corrupt and leaves the device reset.
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  void reset();
  void fail(const Error& reason);
  // Tells the memory where the enabled queues' rings lie
  // (GuestMemory::device_areas()), so that the balloon never gives them away.
  void publish_rings();

  std::shared_ptr<VirtioDevice> device_;
  GuestMemory& memory_;
  VirtioInterrupt& interrupt_;
  uint16_t queue_count_;
  uint64_t driver_features_ = 0;
  std::atomic<uint8_t> status_{0};
  bool activated_ = false;
  std::vector<QueueConfig> queue_config_;
  std::vector<Virtqueue> queues_;
  std::unique_ptr<bool[]> queue_enabled_;
  // memory_'s, held so that the destructor can withdraw the rings also
  // when the memory went first.
  std::shared_ptr<DeviceMemoryAreas> device_areas_;
};

}  // namespace hostvisor
