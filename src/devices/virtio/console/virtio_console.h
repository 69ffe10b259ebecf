// virtio console device (virtio 1.2, 5.3) with a single port: receiveq0
// (queue 0) carries host input to the guest, transmitq0 (queue 1) carries
// guest output to the host. Linux shows it as /dev/hvc0. No MULTIPORT.
// SIZE is offered so the guest's tty follows the host terminal's size
// (set_size(); 80x24 until told), and EMERG_WRITE so early kernel output
// written to the configuration space reaches the host too.
//
// The host side is two calls: an output sink that receives the guest's bytes
// in order, and enqueue_input() that queues host bytes (a bounded buffer) and
// delivers them as soon as the driver has posted receive buffers; buffers the
// driver posts later get the rest. Output the sink cannot take is dropped
// and counted (output_dropped()); the device goes on.
//
// Thread-safe: enqueue_input() may be called from any thread, concurrently
// with the transport's process_queue(). The sink runs on the thread that
// processes transmitq (or writes emerg_wr), with the device lock held: it must
// not call back into the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>

#include "base/fd.h"
#include "devices/virtio/console/virtio_console_spec.h"
#include "devices/virtio/virtio_device_core.h"

namespace hostvisor {

class VirtioConsole : public VirtioDeviceCore {
 public:
  // Takes guest output; false if the host could not take it.
  using OutputSink = std::function<bool(std::span<const uint8_t>)>;
  // Takes guest output and never refuses it (a terminal written with write_all).
  using InfallibleSink = std::function<void(std::span<const uint8_t>)>;
  static constexpr uint16_t kQueueSize = 256;
  static constexpr size_t kDefaultInputCapacity = 64 * 1024;

  // `sink` receives guest output; `input_capacity` bounds the bytes waiting
  // for the guest. Fails only if the eventfd cannot be created.
  static Result<std::shared_ptr<VirtioConsole>> create(OutputSink sink, size_t input_capacity = kDefaultInputCapacity);
  static Result<std::shared_ptr<VirtioConsole>> create(InfallibleSink sink,
                                                       size_t input_capacity = kDefaultInputCapacity);

  // Queues host input for the guest and delivers what the posted receive
  // buffers can take. Returns how many bytes were accepted: fewer than
  // bytes.size() when the buffer is full (the caller keeps the rest and
  // retries when input_space_fd() becomes readable; nothing is dropped
  // silently).
  size_t enqueue_input(std::span<const uint8_t> bytes);
  // Bytes accepted but not yet handed to the guest.
  size_t input_pending() const;
  // Readable (an eventfd; read it to clear) when input space was freed after
  // enqueue_input() refused bytes for lack of room.
  int input_space_fd() const { return space_event_.fd(); }

  // The host terminal's size: the guest sees it in the configuration space
  // and is told of a change with a configuration interrupt (and of a size
  // set before the driver was ready, as soon as it is).
  void set_size(uint16_t cols, uint16_t rows);

  // Transmit chains (and emergency writes) whose output the sink refused.
  uint64_t output_dropped() const;

  // Input not yet handed to the guest and the terminal size.
  void save_state(StateWriter& out) const override;
  Result<void> restore_state(StateReader& in, uint32_t version) override;

  std::string_view name() const override { return "console"; }
  uint32_t device_type() const override;
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_console::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  VirtioConsole(OutputSink sink, size_t input_capacity, EventFd space_event)
      : VirtioDeviceCore(2, kQueueSize),
        sink_(std::move(sink)),
        capacity_(input_capacity),
        space_event_(std::move(space_event)) {}
  Result<void> on_activate() override;
  void serve_queue(uint16_t queue) override;
  // Fills posted receive buffers from input_.
  void deliver_input();
  void transmit();
  void output(std::span<const uint8_t> bytes, bool& dropped);

  OutputSink sink_;
  const size_t capacity_;
  EventFd space_event_;

  // --- guarded by the core's mutex_
  // Kept across a reset, for the next driver (a rebooting guest's console).
  std::deque<uint8_t> input_;
  bool input_refused_ = false;  // enqueue_input turned bytes away since the last space signal
  uint64_t output_dropped_ = 0;
  uint16_t cols_ = 80, rows_ = 24;
  bool size_set_ = false;  // set_size() was called: announce the size on activation
};

}  // namespace hostvisor
