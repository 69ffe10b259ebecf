// A switch port's bounded output: frames encoded in the stream framing,
// waiting for the peer's socket to take them. The bound is in bytes; a
// frame that does not fit is refused (the caller counts the drop) and the
// switch never waits for a peer. Written to the socket in large batches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

#include "base/result.h"

namespace hostvisor::net {

class StreamOutputQueue {
 public:
  explicit StreamOutputQueue(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Appends one frame: the 4-byte length of the parts together, then the
  // parts. False, with nothing appended, when it would pass the bound.
  bool push(std::initializer_list<std::span<const uint8_t>> parts);

  // Appends bytes already framed (the rest of a frame the socket took only
  // part of), with no bound: a stream cannot drop half a frame.
  void push_raw(std::span<const uint8_t> bytes);

  // Writes what the socket takes without blocking. Returns the bytes
  // written (0 when the socket is full), or an error when the peer is gone.
  Result<size_t> flush(int fd);

  bool empty() const { return head_ == buffer_.size(); }
  size_t bytes() const { return buffer_.size() - head_; }
  size_t max_bytes() const { return max_bytes_; }

 private:
  const size_t max_bytes_;
  std::vector<uint8_t> buffer_;
  size_t head_ = 0;  // bytes of buffer_ already written
};

}  // namespace hostvisor::net
