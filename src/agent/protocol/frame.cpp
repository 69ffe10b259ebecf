#include "agent/protocol/frame.h"

namespace hostvisor::agent::protocol {
namespace {

std::string header(FrameType type, size_t payload_bytes) {
  const uint32_t length = static_cast<uint32_t>(payload_bytes + 1);
  std::string out(kFrameHeaderBytes, '\0');
  out[0] = static_cast<char>(length >> 24);
  out[1] = static_cast<char>(length >> 16);
  out[2] = static_cast<char>(length >> 8);
  out[3] = static_cast<char>(length);
  out[4] = static_cast<char>(type);
  return out;
}

}  // namespace

std::string encode_json_frame(const std::string& json_text) {
  std::string out = header(FrameType::kJson, json_text.size());
  out += json_text;
  return out;
}

std::string encode_data_frame(Stream stream, std::span<const uint8_t> data) {
  std::string out = header(FrameType::kData, data.size() + 1);
  out.push_back(static_cast<char>(stream));
  out.append(reinterpret_cast<const char*>(data.data()), data.size());
  return out;
}

Result<void> FrameDecoder::feed(std::span<const uint8_t> bytes) {
  if (bytes.size() > room()) return Error(ErrorCode::kOutOfRange, "agent protocol: peer sent more than one frame can hold");
  if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return ok();
}

Result<std::optional<Frame>> FrameDecoder::next() {
  const size_t available = buffer_.size() - consumed_;
  if (available < kFrameHeaderBytes) return std::optional<Frame>();
  const auto* p = reinterpret_cast<const uint8_t*>(buffer_.data() + consumed_);
  const uint32_t length = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  const uint8_t type = p[4];
  if (length == 0) return Error(ErrorCode::kCorrupt, "agent protocol: frame of length 0");
  const size_t payload = length - 1;
  Frame frame;
  if (type == static_cast<uint8_t>(FrameType::kJson)) {
    if (payload > kMaxJsonPayload) return Error(ErrorCode::kOutOfRange, "agent protocol: JSON frame of " + std::to_string(payload) + " bytes is over the limit");
    frame.type = FrameType::kJson;
  } else if (type == static_cast<uint8_t>(FrameType::kData)) {
    if (payload < 1) return Error(ErrorCode::kCorrupt, "agent protocol: data frame without a stream id");
    if (payload > kMaxDataPayload) return Error(ErrorCode::kOutOfRange, "agent protocol: data frame of " + std::to_string(payload) + " bytes is over the limit");
    frame.type = FrameType::kData;
  } else {
    return Error(ErrorCode::kCorrupt, "agent protocol: unknown frame type " + std::to_string(type));
  }
  if (available - 1 < length + 3) return std::optional<Frame>();  // available < header(4) + length
  const char* body = buffer_.data() + consumed_ + kFrameHeaderBytes;
  if (frame.type == FrameType::kData) {
    const uint8_t stream = static_cast<uint8_t>(body[0]);
    if (stream > static_cast<uint8_t>(Stream::kStderr)) return Error(ErrorCode::kCorrupt, "agent protocol: unknown stream id " + std::to_string(stream));
    frame.stream = static_cast<Stream>(stream);
    frame.payload.assign(body + 1, payload - 1);
  } else {
    frame.payload.assign(body, payload);
  }
  consumed_ += 4 + length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  return std::optional<Frame>(std::move(frame));
}

}  // namespace hostvisor::agent::protocol
