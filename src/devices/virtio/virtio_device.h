// What a virtio device implementation (entropy, block, net, console...)
// provides, independent of the transport (PCI or MMIO) that carries it. The
// transport negotiates features, collects the queue layout the driver
// programs, builds validated Virtqueues at DRIVER_OK and calls activate();
// then it forwards queue notifications to process_queue().
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/virtio/virtqueue.h"
#include "memory/guest_memory.h"

namespace hostvisor {

// The device's way back to the driver, implemented by the transport.
// Thread-safe: completions may come from any thread.
class VirtioInterrupt {
 public:
  virtual ~VirtioInterrupt() = default;
  // Buffers were returned on queue `queue` (call after Virtqueue::needs_interrupt said so).
  virtual void signal_used(uint16_t queue) = 0;
  // The device-specific configuration changed.
  virtual void signal_config_change() = 0;
  // The device hit an unrecoverable driver error (e.g. a hostile chain):
  // sets DEVICE_NEEDS_RESET and tells the driver (2.1.2). Queue processing
  // stops until the driver resets the device.
  virtual void signal_needs_reset(const Error& reason) = 0;
};

// Everything a device needs once the driver is ready. The queues are owned
// by the transport and stay valid until the device's reset() returns.
struct VirtioActivation {
  GuestMemory* memory = nullptr;
  uint64_t features = 0;        // what the driver accepted
  std::span<Virtqueue> queues;  // one per queue; enabled[i] false: driver did not set it up
  std::span<const bool> enabled;
  VirtioInterrupt* interrupt = nullptr;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual std::string_view name() const = 0;
  virtual uint32_t device_type() const = 0;  // virtio::kDevice*
  // Feature bits the device offers, device-specific and reserved ones
  // (the transport always adds VIRTIO_F_VERSION_1).
  virtual uint64_t device_features() const = 0;
  virtual uint16_t queue_count() const = 0;
  virtual uint16_t queue_max_size(uint16_t queue) const = 0;

  // Device-specific configuration space (offset relative to its start).
  virtual uint32_t config_size() const { return 0; }
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0); }
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) {}

  // DRIVER_OK: start working. An error leaves the device DEVICE_NEEDS_RESET.
  virtual Result<void> activate(const VirtioActivation& activation) = 0;
  // Driver reset (status 0): stop using queues and memory before returning.
  virtual void reset() = 0;
  // The driver notified queue `queue`. A guest-caused error marks the
  // device DEVICE_NEEDS_RESET.
  virtual Result<void> process_queue(uint16_t queue) = 0;

  // Readable when the device wants to be called again (work left over from
  // a bounded drain, or a retry): whoever runs the device's event loop
  // watches it and then calls run_rescheduled() on that thread. -1: the
  // device never asks.
  virtual int reschedule_fd() const { return -1; }
  virtual void run_rescheduled() {}

  // Snapshots. quiesce() is called while the vCPUs are paused, on the
  // thread that runs the device's event loop: the device finishes what is
  // in flight (disk I/O writes into guest RAM) or gives chains it holds back
  // to the available ring, so that the transport's queue positions alone
  // describe the rings. Then save_state() writes what is the device's own
  // (a MAC, pending console input); restore_state() reads it into a device
  // built from the same configuration, before its transport is restored.
  virtual Result<void> quiesce() { return ok(); }
  virtual uint32_t state_version() const { return 1; }
  virtual void save_state(StateWriter& out) const {}
  virtual Result<void> restore_state(StateReader& in, uint32_t version) { return ok(); }
};

// Serves a configuration-space read of `data.size()` bytes at `offset` from
// the device's configuration structure; bytes past its end read as zero.
template <typename Config>
void read_config_bytes(const Config& config, uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= sizeof config) return;
  const size_t n = std::min<uint64_t>(data.size(), sizeof config - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config) + offset, n);
}

}  // namespace hostvisor
