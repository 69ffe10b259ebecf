#include "net/switch/stream_output_queue.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "net/switch/stream_framing.h"

namespace hostvisor::net {

bool StreamOutputQueue::push(std::initializer_list<std::span<const uint8_t>> parts) {
  size_t length = 0;
  for (const auto& part : parts) length += part.size();
  if (length > UINT32_MAX || bytes() + kStreamLengthSize + length > max_bytes_) return false;
  if (head_ > 0 && head_ >= buffer_.size() / 2) {
    // Reclaim what was written before the buffer grows.
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
  const auto prefix = encode_stream_length(static_cast<uint32_t>(length));
  buffer_.insert(buffer_.end(), prefix.begin(), prefix.end());
  for (const auto& part : parts) buffer_.insert(buffer_.end(), part.begin(), part.end());
  return true;
}

void StreamOutputQueue::push_raw(std::span<const uint8_t> bytes) {
  if (head_ > 0 && head_ >= buffer_.size() / 2) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

Result<size_t> StreamOutputQueue::flush(int fd) {
  size_t written = 0;
  while (!empty()) {
    const ssize_t n = ::send(fd, buffer_.data() + head_, bytes(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return Error::from_errno("writing to a switch port");
    }
    head_ += static_cast<size_t>(n);
    written += static_cast<size_t>(n);
  }
  if (empty()) {
    buffer_.clear();
    head_ = 0;
  }
  return written;
}

}  // namespace hostvisor::net
