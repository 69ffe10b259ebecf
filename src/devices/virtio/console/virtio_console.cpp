#include "devices/virtio/console/virtio_console.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

using namespace virtio_console;

Result<std::shared_ptr<VirtioConsole>> VirtioConsole::create(OutputSink sink, size_t input_capacity) {
  EventFd event = HV_TRY(EventFd::create(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (input_capacity == 0) input_capacity = 1;
  return std::shared_ptr<VirtioConsole>(new VirtioConsole(std::move(sink), input_capacity, std::move(event)));
}

uint32_t VirtioConsole::device_type() const { return virtio::kDeviceConsole; }

uint64_t VirtioConsole::device_features() const {
  return virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx) |
         virtio::feature_bit(kFeatureSize) | virtio::feature_bit(kFeatureEmergencyWrite);
}

void VirtioConsole::read_config(uint64_t offset, std::span<uint8_t> data) {
  Config c{};
  {
    std::lock_guard lock(mutex_);
    c.cols = cols_;
    c.rows = rows_;
  }
  // max_nr_ports is only valid with MULTIPORT (not offered); emerg_wr reads as zero.
  const auto* bytes = reinterpret_cast<const uint8_t*>(&c);
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < sizeof c ? bytes[offset + i] : 0;
}

void VirtioConsole::set_size(uint16_t cols, uint16_t rows) {
  std::lock_guard lock(mutex_);
  size_set_ = true;
  if (cols == cols_ && rows == rows_) return;
  cols_ = cols;
  rows_ = rows;
  if (active_ && !failed_) active_->interrupt->signal_config_change();
}

void VirtioConsole::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // 5.3.6.1: a write to emerg_wr outputs its low byte, even before DRIVER_OK.
  if (offset != offsetof(Config, emerg_wr) || data.empty()) return;
  std::lock_guard lock(mutex_);
  if (sink_) sink_(data.first(1));
}

Result<void> VirtioConsole::activate(const VirtioActivation& activation) {
  if (!activation.memory || !activation.interrupt || activation.queues.size() != 2 || activation.enabled.size() != 2)
    return Error(ErrorCode::kInternal, "virtio-console activated without its two queues");
  std::lock_guard lock(mutex_);
  active_ = activation;
  failed_ = false;
  // Input typed before the driver was ready waits for its first receive buffers.
  deliver_input_locked();
  // Linux reads cols/rows only when told of a change: a size the host set
  // before the driver came up is announced now, or the guest would keep 0x0.
  if (size_set_) active_->interrupt->signal_config_change();
  return ok();
}

void VirtioConsole::reset() {
  std::lock_guard lock(mutex_);
  active_.reset();
  failed_ = false;
  // Buffered input is kept for the next driver (a rebooting guest's console).
}

size_t VirtioConsole::enqueue_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  const size_t room = capacity_ - input_.size();
  const size_t take = std::min(room, bytes.size());
  input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(take));
  if (take < bytes.size()) input_refused_ = true;
  deliver_input_locked();
  return take;
}

size_t VirtioConsole::input_pending() const {
  std::lock_guard lock(mutex_);
  return input_.size();
}

Result<void> VirtioConsole::process_queue(uint16_t queue) {
  std::lock_guard lock(mutex_);
  if (queue == kReceiveQueue) deliver_input_locked();  // the driver posted receive buffers
  if (queue == kTransmitQueue) transmit_locked();
  return ok();
}

void VirtioConsole::fail_locked(const Error& error) {
  failed_ = true;
  active_->interrupt->signal_needs_reset(error.with_context("virtio-console"));
}

void VirtioConsole::deliver_input_locked() {
  if (!active_ || failed_ || !active_->enabled[kReceiveQueue] || input_.empty()) return;
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[kReceiveQueue];
  bool used = false;
  std::vector<uint8_t> chunk;
  while (!input_.empty()) {
    auto popped = q.pop(memory);
    if (!popped) {
      fail_locked(popped.error());
      break;
    }
    if (!popped->has_value()) break;  // no buffers: the rest waits for the driver
    const DescriptorChain& chain = **popped;
    if (chain.writable_bytes() == 0) {
      fail_locked(Error(ErrorCode::kGuest, "receive buffer at descriptor " + std::to_string(chain.head()) +
                                               " is not device-writable; the driver is broken or hostile"));
      break;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chain.writable_bytes(), input_.size()));
    chunk.assign(input_.begin(), input_.begin() + static_cast<ptrdiff_t>(n));
    auto wrote = chain.write(memory, 0, chunk);
    if (!wrote) {
      fail_locked(wrote.error());
      break;
    }
    input_.erase(input_.begin(), input_.begin() + static_cast<ptrdiff_t>(n));
    if (auto r = q.add_used(memory, chain, static_cast<uint32_t>(n)); !r) {
      fail_locked(r.error());
      break;
    }
    used = true;
  }
  if (used) {
    auto notify = q.needs_interrupt(memory);
    if (!notify || *notify) active_->interrupt->signal_used(kReceiveQueue);
    if (input_refused_ && input_.size() < capacity_) {
      input_refused_ = false;
      space_event_.signal();
    }
  }
}

void VirtioConsole::transmit_locked() {
  if (!active_ || failed_ || !active_->enabled[kTransmitQueue]) return;
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[kTransmitQueue];
  bool used = false;
  std::array<uint8_t, 4096> chunk;  // on the stack: no allocation per notification
  for (;;) {
    auto popped = q.pop(memory);
    if (!popped) {
      fail_locked(popped.error());
      break;
    }
    if (!popped->has_value()) break;
    const DescriptorChain& chain = **popped;
    // The readable bytes are the output; device-writable buffers carry nothing here.
    for (uint64_t at = 0; at < chain.readable_bytes();) {
      auto got = chain.read(memory, at, chunk);
      if (!got || *got == 0) break;
      if (sink_) sink_(std::span<const uint8_t>(chunk.data(), *got));
      at += *got;
    }
    if (auto r = q.add_used(memory, chain, 0); !r) {
      fail_locked(r.error());
      break;
    }
    used = true;
  }
  if (used) {
    auto notify = q.needs_interrupt(memory);
    if (!notify || *notify) active_->interrupt->signal_used(kTransmitQueue);
  }
}

}  // namespace hostvisor
