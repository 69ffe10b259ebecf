#include "net/switch/stream_framing.h"

#include <cstring>
#include <string>

namespace hostvisor::net {

std::array<uint8_t, kStreamLengthSize> encode_stream_length(uint32_t length) {
  return {static_cast<uint8_t>(length >> 24), static_cast<uint8_t>(length >> 16), static_cast<uint8_t>(length >> 8),
          static_cast<uint8_t>(length)};
}

StreamFrameReader::StreamFrameReader(size_t min_frame, size_t max_frame, size_t batch_frames)
    : min_frame_(min_frame), max_frame_(max_frame), batch_frames_(batch_frames) {
  buffer_.resize((kStreamLengthSize + max_frame_) * batch_frames_);
}

void StreamFrameReader::set_limits(size_t min_frame, size_t max_frame) {
  min_frame_ = min_frame;
  max_frame_ = max_frame;
  const size_t wanted = (kStreamLengthSize + max_frame_) * batch_frames_;
  if (buffer_.size() < wanted) buffer_.resize(wanted);
}

void StreamFrameReader::compact() {
  if (begin_ == 0) return;
  if (end_ > begin_) std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
  end_ -= begin_;
  begin_ = 0;
}

std::span<uint8_t> StreamFrameReader::free_space() {
  // Keep room for at least one whole frame after what is pending: a partial
  // frame can always be completed in place.
  if (buffer_.size() - end_ < kStreamLengthSize + max_frame_) compact();
  return std::span<uint8_t>(buffer_).subspan(end_);
}

void StreamFrameReader::commit(size_t n) { end_ += std::min(n, buffer_.size() - end_); }

Result<std::optional<std::span<const uint8_t>>> StreamFrameReader::next() {
  if (failed_) return Error(ErrorCode::kCorrupt, "the stream already failed");
  if (end_ - begin_ < kStreamLengthSize) return std::optional<std::span<const uint8_t>>();
  const uint8_t* p = buffer_.data() + begin_;
  const uint32_t length =
      static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
  if (length == 0 || length < min_frame_ || length > max_frame_) {
    failed_ = true;
    if (length == 0) return Error(ErrorCode::kCorrupt, "a frame of length 0");
    return Error(ErrorCode::kCorrupt, "a frame of " + std::to_string(length) + " bytes (this port takes " +
                                          std::to_string(min_frame_) + " to " + std::to_string(max_frame_) + ")");
  }
  if (end_ - begin_ - kStreamLengthSize < length) return std::optional<std::span<const uint8_t>>();
  const std::span<const uint8_t> frame(p + kStreamLengthSize, length);
  begin_ += kStreamLengthSize + length;
  if (begin_ == end_) begin_ = end_ = 0;
  return std::optional<std::span<const uint8_t>>(frame);
}

Result<void> StreamFrameReader::finish() const {
  if (end_ != begin_)
    return Error(ErrorCode::kCorrupt,
                 "the stream ended inside a frame (" + std::to_string(end_ - begin_) + " bytes left over)");
  return ok();
}

}  // namespace hostvisor::net
