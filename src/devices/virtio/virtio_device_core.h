// The machinery every virtio device model shares (blk, net, console, rng),
// so that each device file holds only what its section of the spec says:
//
//  - activation: the VirtioActivation between activate() and reset(), its
//    checks, and the device lock (mutex_) every entry point takes;
//  - the failed state: fail_guest_misuse() sets DEVICE_NEEDS_RESET once and
//    stops every queue until the driver resets the device. Only a guest's
//    misuse goes there (a hostile chain, a head reused while in flight, a
//    chain that cannot be answered). A host-side failure (disk, entropy,
//    network backend, terminal) is the device's to answer (IOERR, hold and
//    retry, drop and count): the device keeps serving;
//  - a bounded drain: within one turn, next_chain() hands out at most
//    queue-size chains of a queue. When it stops at that budget with chains
//    still available it schedules another turn (RescheduleTimer) instead of
//    going on, so a driver that keeps refilling the ring cannot pin the
//    thread that serves it; the rest is served when the event loop calls
//    run_rescheduled();
//  - heads in flight: Virtqueue refuses a head made available again while the
//    device holds it, which the drain turns into DEVICE_NEEDS_RESET, so no
//    chain is ever served or returned twice;
//  - interrupts: chains returned during a turn are signalled once, at its end,
//    as the ring's suppression (EVENT_IDX, NO_INTERRUPT) allows.
//
// A turn is one entry into the device under mutex_: a queue notification
// (process_queue), a rescheduled run, or a device's own entry point (disk
// completions, a network backend, host input) wrapped in run_turn().
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "devices/virtio/reschedule_timer.h"
#include "devices/virtio/virtio_device.h"

namespace hostvisor {

class VirtioDeviceCore : public VirtioDevice {
 public:
  Result<void> activate(const VirtioActivation& activation) final;
  void reset() final;
  Result<void> process_queue(uint16_t queue) final;
  int reschedule_fd() const final { return timer_ ? timer_->fd() : -1; }
  void run_rescheduled() final;
  uint16_t queue_count() const final { return queue_count_; }
  uint16_t queue_max_size(uint16_t) const final { return queue_max_size_; }

  // What a queue offers when the device was given no valid size.
  static constexpr uint16_t kDefaultQueueSize = 256;

 protected:
  // `queue_count` queues of at most `queue_max_size` entries each (a power
  // of two up to 32768, else kDefaultQueueSize).
  VirtioDeviceCore(uint16_t queue_count, uint16_t queue_max_size);

  // Device hooks, each called with mutex_ held.
  // After the core took the activation; an error refuses it.
  virtual Result<void> on_activate() { return ok(); }
  // Before the core drops the activation: stop using queues and memory.
  virtual void on_reset() {}
  // One turn of queue `queue` (enabled, device not failed): take chains
  // with next_chain() until it returns nothing.
  virtual void serve_queue(uint16_t queue) = 0;

  // Runs `work` as one turn under mutex_, for a device's own entry points.
  template <typename Work>
  void run_turn(Work&& work) {
    std::lock_guard lock(mutex_);
    begin_turn_locked();
    work();
    end_turn_locked();
  }

  // --- For hooks and turns only (mutex_ held).
  // Activated and not failed.
  bool running() const { return active_.has_value() && !failed_; }
  // Running, and the driver set queue `queue` up.
  bool serving(uint16_t queue) const;
  GuestMemory& memory() const { return *active_->memory; }
  uint64_t features() const { return active_->features; }
  uint16_t queue_size(uint16_t queue) const { return active_->queues[queue].size(); }
  // The next chain of `queue` in this turn, or nothing: the ring is empty,
  // the turn's budget is spent (another turn is scheduled), or the driver
  // misused the ring (the device now needs a reset).
  std::optional<DescriptorChain> next_chain(uint16_t queue);
  // The same for a queue whose chains the device fills (receive queues): a
  // chain with nothing device-writable is guest misuse.
  std::optional<DescriptorChain> next_writable_chain(uint16_t queue);
  // Gives `chain` back to the driver with `written` bytes in its writable
  // buffers. False if it could not be (the device failed, or it was not the
  // device's to return); then nothing is to be done with it any more.
  bool complete(uint16_t queue, const DescriptorChain& chain, uint64_t written);
  // The driver's avail->idx of `queue` (serving it), or nothing if it cannot
  // be read.
  std::optional<uint16_t> driver_avail_idx(uint16_t queue);
  // Asks for a notification once the driver makes entry `idx` of `queue`
  // available, even if chains before it are still untaken (EVENT_IDX).
  void request_notify_at(uint16_t queue, uint16_t idx);
  // Puts back the chain next_chain() returned last, unused (see Virtqueue::unpop).
  void put_back(uint16_t queue, const DescriptorChain& chain);
  // DEVICE_NEEDS_RESET for a guest's misuse; queues stop until reset().
  void fail_guest_misuse(const Error& error);
  // Serve `queue` again after `delay`, for a host resource that is not
  // there yet; the device keeps what it holds meanwhile.
  void retry_later(uint16_t queue, std::chrono::milliseconds delay);
  void signal_config_change();

  // The device lock: guards the core's state and each device's own.
  mutable std::mutex mutex_;

 private:
  struct QueueTurn {
    uint32_t taken = 0;        // chains next_chain() handed out this turn
    bool returned = false;     // chains went back to the driver this turn
    bool rescheduled = false;  // serve again on the next run_rescheduled()
  };
  void begin_turn_locked();
  void end_turn_locked();
  void reschedule_locked(uint16_t queue, std::chrono::nanoseconds delay);
  std::string device_label() const;

  const uint16_t queue_count_;
  const uint16_t queue_max_size_;
  Result<RescheduleTimer> timer_;
  std::optional<std::chrono::steady_clock::time_point> timer_expiry_;
  std::optional<VirtioActivation> active_;
  bool failed_ = false;  // DEVICE_NEEDS_RESET was signalled
  std::vector<QueueTurn> turns_;
};

}  // namespace hostvisor
