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

Result<std::shared_ptr<VirtioConsole>> VirtioConsole::create(InfallibleSink sink, size_t input_capacity) {
  OutputSink always_taken;
  if (sink) {
    always_taken = [sink = std::move(sink)](std::span<const uint8_t> bytes) {
      sink(bytes);
      return true;
    };
  }
  return create(std::move(always_taken), input_capacity);
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
  read_config_bytes(c, offset, data);
}

void VirtioConsole::set_size(uint16_t cols, uint16_t rows) {
  std::lock_guard lock(mutex_);
  size_set_ = true;
  if (cols == cols_ && rows == rows_) return;
  cols_ = cols;
  rows_ = rows;
  signal_config_change();
}

uint64_t VirtioConsole::output_dropped() const {
  std::lock_guard lock(mutex_);
  return output_dropped_;
}

void VirtioConsole::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // 5.3.6.1: a write to emerg_wr outputs its low byte, even before DRIVER_OK.
  if (offset != offsetof(Config, emerg_wr) || data.empty()) return;
  std::lock_guard lock(mutex_);
  bool dropped = false;
  output(data.first(1), dropped);
  if (dropped) ++output_dropped_;
}

Result<void> VirtioConsole::on_activate() {
  // Input typed before the driver was ready waits for its first receive buffers.
  deliver_input();
  // Linux reads cols/rows only when told of a change: a size the host set
  // before the driver came up is announced now, or the guest would keep 0x0.
  if (size_set_) signal_config_change();
  return ok();
}

size_t VirtioConsole::enqueue_input(std::span<const uint8_t> bytes) {
  size_t take = 0;
  run_turn([&] {
    const size_t room = capacity_ - input_.size();
    take = std::min(room, bytes.size());
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(take));
    if (take < bytes.size()) input_refused_ = true;
    deliver_input();
  });
  return take;
}

size_t VirtioConsole::input_pending() const {
  std::lock_guard lock(mutex_);
  return input_.size();
}

void VirtioConsole::serve_queue(uint16_t queue) {
  if (queue == kReceiveQueue) deliver_input();  // the driver posted receive buffers
  if (queue == kTransmitQueue) transmit();
}

void VirtioConsole::deliver_input() {
  std::vector<uint8_t> chunk;
  bool delivered = false;
  while (!input_.empty()) {
    auto chain = next_writable_chain(kReceiveQueue);
    if (!chain) break;  // no buffers (the rest waits for the driver), a later turn, or a broken one
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chain->writable_bytes(), input_.size()));
    chunk.assign(input_.begin(), input_.begin() + static_cast<ptrdiff_t>(n));
    auto wrote = chain->write(memory(), 0, chunk);
    if (!wrote) {
      fail_guest_misuse(wrote.error());
      break;
    }
    if (!complete(kReceiveQueue, *chain, n)) break;
    input_.erase(input_.begin(), input_.begin() + static_cast<ptrdiff_t>(n));
    delivered = true;
  }
  if (delivered && input_refused_ && input_.size() < capacity_) {
    input_refused_ = false;
    space_event_.signal();
  }
}

void VirtioConsole::output(std::span<const uint8_t> bytes, bool& dropped) {
  if (dropped || !sink_) return;
  if (!sink_(bytes)) dropped = true;
}

void VirtioConsole::transmit() {
  std::array<uint8_t, 4096> chunk;  // on the stack: no allocation per notification
  while (auto chain = next_chain(kTransmitQueue)) {
    // The readable bytes are the output; device-writable buffers carry nothing here.
    bool dropped = false;
    for (uint64_t at = 0; at < chain->readable_bytes();) {
      auto got = chain->read(memory(), at, chunk);
      if (!got || *got == 0) break;
      output(std::span<const uint8_t>(chunk.data(), *got), dropped);
      at += *got;
    }
    if (dropped) ++output_dropped_;
    if (!complete(kTransmitQueue, *chain, 0)) break;
  }
}

void VirtioConsole::save_state(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  out.put(static_cast<uint32_t>(input_.size()));
  for (uint8_t byte : input_) out.put(byte);
  out.put(cols_);
  out.put(rows_);
  out.put_bool(size_set_);
}

Result<void> VirtioConsole::restore_state(StateReader& in, uint32_t version) {
  const uint32_t pending = in.get<uint32_t>();
  if (pending > capacity_) in.fail(std::to_string(pending) + " bytes of pending input, more than the buffer holds");
  std::deque<uint8_t> input;
  for (uint32_t i = 0; i < pending && in.ok(); ++i) input.push_back(in.get<uint8_t>());
  const uint16_t cols = in.get<uint16_t>(), rows = in.get<uint16_t>();
  const bool size_set = in.get_bool();
  HV_TRY(in.finish());
  std::lock_guard lock(mutex_);
  input_ = std::move(input);
  cols_ = cols;
  rows_ = rows;
  size_set_ = size_set;
  return ok();
}

}  // namespace hostvisor
