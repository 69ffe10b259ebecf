// The FUSE wire format (linux/fuse.h) as a bounded reader over one request's
// bytes and a growing reply. Every field a guest sends goes through
// FuseRequestReader, which never reads past the request: a short request is
// a missing field (the server answers EINVAL), never an overread.
#pragma once

#include <linux/fuse.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace hostvisor::fs {

class FuseRequestReader {
 public:
  explicit FuseRequestReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  // The next sizeof(T) bytes as a T, or nothing when fewer remain.
  template <typename T>
  std::optional<T> take() {
    if (remaining() < sizeof(T)) return std::nullopt;
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  // Up to sizeof(T) bytes as a T, zero-filled: for structures whose tail an
  // older protocol minor does not send (fuse_init_in's flags2).
  template <typename T>
  T take_prefix() {
    T value{};
    const size_t n = remaining() < sizeof(T) ? remaining() : sizeof(T);
    std::memcpy(&value, bytes_.data() + pos_, n);
    pos_ += n;
    return value;
  }
  // A NUL-terminated string that ends inside the request (without its NUL).
  std::optional<std::string_view> take_string() {
    const auto rest = bytes_.subspan(pos_);
    const void* nul = std::memchr(rest.data(), 0, rest.size());
    if (nul == nullptr) return std::nullopt;
    const size_t length = static_cast<const uint8_t*>(nul) - rest.data();
    std::string_view s(reinterpret_cast<const char*>(rest.data()), length);
    pos_ += length + 1;
    return s;
  }
  std::optional<std::span<const uint8_t>> take_bytes(uint64_t n) {
    if (remaining() < n) return std::nullopt;
    auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  size_t remaining() const { return bytes_.size() - pos_; }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

// A reply: fuse_out_header first, its len filled in by finish().
class FuseReply {
 public:
  explicit FuseReply(uint64_t unique) {
    fuse_out_header h{};
    h.unique = unique;
    append(h);
  }
  template <typename T>
  void append(const T& value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  void append_bytes(std::span<const uint8_t> data) { bytes_.insert(bytes_.end(), data.begin(), data.end()); }
  // Room for `n` more bytes, zeroed, returned for the caller to fill.
  uint8_t* grow(size_t n) {
    const size_t at = bytes_.size();
    bytes_.resize(at + n);
    return bytes_.data() + at;
  }
  void shrink_to(size_t size) { bytes_.resize(size); }
  size_t size() const { return bytes_.size(); }
  std::vector<uint8_t> finish(int error) && {
    auto* h = reinterpret_cast<fuse_out_header*>(bytes_.data());
    if (error != 0) bytes_.resize(sizeof(fuse_out_header));
    h->error = -error;
    h->len = static_cast<uint32_t>(bytes_.size());
    return std::move(bytes_);
  }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace hostvisor::fs
