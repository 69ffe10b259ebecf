#include "base/state_codec.h"

namespace hostvisor {

void StateWriter::put_bytes(std::span<const uint8_t> data) {
  put<uint32_t>(static_cast<uint32_t>(data.size()));
  put_raw(data);
}

void StateWriter::put_string(const std::string& text) {
  put_bytes({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

bool StateReader::take(size_t length) {
  if (!ok()) return false;
  if (length > remaining()) {
    fail("truncated: " + std::to_string(length) + " more bytes needed at offset " + std::to_string(offset_) +
         ", " + std::to_string(remaining()) + " left");
    return false;
  }
  offset_ += length;
  return true;
}

bool StateReader::get_bool() {
  uint8_t value = get<uint8_t>();
  if (value > 1) fail("a boolean field holds " + std::to_string(value));
  return value == 1;
}

std::vector<uint8_t> StateReader::get_bytes(size_t max_length) {
  uint32_t length = get<uint32_t>();
  if (!ok()) return {};
  if (length > max_length) {
    fail("a field of " + std::to_string(length) + " bytes exceeds its limit of " + std::to_string(max_length));
    return {};
  }
  if (!take(length)) return {};
  auto start = bytes_.begin() + static_cast<std::ptrdiff_t>(offset_ - length);
  return {start, start + length};
}

std::string StateReader::get_string(size_t max_length) {
  std::vector<uint8_t> raw = get_bytes(max_length);
  return {raw.begin(), raw.end()};
}

void StateReader::get_raw(std::span<uint8_t> out) {
  if (!take(out.size())) {
    std::memset(out.data(), 0, out.size());
    return;
  }
  std::memcpy(out.data(), bytes_.data() + offset_ - out.size(), out.size());
}

void StateReader::fail(const std::string& reason) {
  if (error_.empty()) error_ = reason;
}

Result<void> StateReader::finish() const {
  if (!ok()) return Error(ErrorCode::kCorrupt, what_ + ": " + error_);
  if (remaining() != 0)
    return Error(ErrorCode::kCorrupt, what_ + ": " + std::to_string(remaining()) + " unexpected bytes at the end");
  return {};
}

}  // namespace hostvisor
