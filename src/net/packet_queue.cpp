#include "net/packet_queue.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cstring>

namespace hostvisor::net {

namespace {
constexpr size_t kSpareBuffers = 64;
// A spare buffer grown by one jumbo packet is not kept: it would pin 64 KiB.
constexpr size_t kLargestSpareBuffer = 2048;
}  // namespace

Result<std::unique_ptr<PacketQueue>> PacketQueue::create(size_t max_packets, size_t max_bytes) {
  EventFd event = HV_TRY(EventFd::create(0, EFD_NONBLOCK | EFD_CLOEXEC));
  return std::unique_ptr<PacketQueue>(new PacketQueue(std::move(event), max_packets, max_bytes));
}

bool PacketQueue::push(std::span<const iovec> packet) {
  size_t length = 0;
  for (const iovec& part : packet) length += part.iov_len;
  std::lock_guard lock(mutex_);
  if (packets_.size() >= max_packets_ || bytes_ + length > max_bytes_) return false;
  std::vector<uint8_t> buffer;
  if (!spare_.empty()) {
    buffer = std::move(spare_.back());
    spare_.pop_back();
  }
  buffer.resize(length);
  size_t at = 0;
  for (const iovec& part : packet) {
    if (part.iov_len) std::memcpy(buffer.data() + at, part.iov_base, part.iov_len);
    at += part.iov_len;
  }
  // The counter is non-zero exactly while packets_ is not empty; both change under the lock.
  if (packets_.empty()) event_.signal();
  packets_.push_back(std::move(buffer));
  bytes_ += length;
  return true;
}

std::optional<size_t> PacketQueue::pop(std::span<uint8_t> buffer) {
  std::lock_guard lock(mutex_);
  if (packets_.empty()) return std::nullopt;
  std::vector<uint8_t> packet = std::move(packets_.front());
  packets_.pop_front();
  bytes_ -= packet.size();
  if (packets_.empty()) event_.consume();
  const size_t n = std::min(packet.size(), buffer.size());
  if (n) std::memcpy(buffer.data(), packet.data(), n);
  if (spare_.size() < kSpareBuffers && packet.capacity() <= kLargestSpareBuffer) spare_.push_back(std::move(packet));
  return n;
}

size_t PacketQueue::size() const {
  std::lock_guard lock(mutex_);
  return packets_.size();
}

size_t PacketQueue::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace hostvisor::net
