// The byte encoding of component State structs inside snapshot records:
// little-endian fixed-width fields, length-prefixed byte strings. Each
// component encodes its own State with these, so the snapshot layer never
// knows a component's fields. Decoding reads untrusted bytes (a snapshot file
// is user input): every read is bounds-checked, a failed read sets a sticky
// error and yields zeros, and the caller checks ok() once at the end.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/result.h"

namespace hostvisor {

class StateWriter {
 public:
  template <typename T>
    requires std::is_integral_v<T> || std::is_enum_v<T>
  void put(T value) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));  // the host is little-endian x86-64
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
  }
  void put_bool(bool value) { put<uint8_t>(value ? 1 : 0); }
  // A u32 length, then the bytes.
  void put_bytes(std::span<const uint8_t> data);
  void put_string(const std::string& text);
  // Exactly data.size() bytes, no length: for fixed-size arrays.
  void put_raw(std::span<const uint8_t> data) { bytes_.insert(bytes_.end(), data.begin(), data.end()); }

  const std::vector<uint8_t>& bytes() const { return bytes_; }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class StateReader {
 public:
  // `what` names the record in error messages ("vcpu 0").
  StateReader(std::span<const uint8_t> bytes, std::string what) : bytes_(bytes), what_(std::move(what)) {}

  template <typename T>
    requires std::is_integral_v<T> || std::is_enum_v<T>
  T get() {
    T value{};
    if (!take(sizeof(T))) return value;
    std::memcpy(&value, bytes_.data() + offset_ - sizeof(T), sizeof(T));
    return value;
  }
  bool get_bool();
  // A length-prefixed byte string of at most max_length bytes.
  std::vector<uint8_t> get_bytes(size_t max_length);
  std::string get_string(size_t max_length);
  // Fills `out` exactly.
  void get_raw(std::span<uint8_t> out);

  // Marks the record invalid with a reason (a field out of its range).
  void fail(const std::string& reason);
  bool ok() const { return error_.empty(); }
  size_t remaining() const { return bytes_.size() - offset_; }
  // ok(), every byte consumed; otherwise a kCorrupt error naming the record.
  Result<void> finish() const;

 private:
  bool take(size_t length);

  std::span<const uint8_t> bytes_;
  size_t offset_ = 0;
  std::string what_;
  std::string error_;
};

}  // namespace hostvisor
