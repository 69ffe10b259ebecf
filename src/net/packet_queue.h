// A bounded FIFO of packets handed from one thread to another, with an
// eventfd that is readable exactly while the queue holds a packet (so an
// epoll loop can watch it level-triggered). Bounded by packets and by bytes:
// a producer faster than its consumer loses packets (push() says so and the
// caller counts the drop), it never grows host memory. Thread-safe.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace hostvisor::net {

class PacketQueue {
 public:
  static Result<std::unique_ptr<PacketQueue>> create(size_t max_packets, size_t max_bytes);

  // Copies the packet in; false when it does not fit (the queue is full).
  bool push(std::span<const iovec> packet);
  // Copies the oldest packet into `buffer` and removes it; returns its
  // length, cut to buffer.size(). Nothing when the queue is empty.
  std::optional<size_t> pop(std::span<uint8_t> buffer);

  int event_fd() const { return event_.fd(); }
  size_t size() const;
  size_t bytes() const;
  size_t max_packets() const { return max_packets_; }

 private:
  PacketQueue(EventFd event, size_t max_packets, size_t max_bytes)
      : event_(std::move(event)), max_packets_(max_packets), max_bytes_(max_bytes) {}

  EventFd event_;
  const size_t max_packets_;
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::deque<std::vector<uint8_t>> packets_;
  size_t bytes_ = 0;
  // Buffers of popped packets, reused by push() so that a steady flow does
  // not allocate per packet. At most kSpareBuffers are kept.
  std::vector<std::vector<uint8_t>> spare_;
};

}  // namespace hostvisor::net
