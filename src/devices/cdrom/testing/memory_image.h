// A read-only image in host memory for CD-ROM tests and fuzz targets; the
// range checks are the block layer's own, and a write is a bug (traps).
#pragma once

#include <cstring>
#include <vector>

#include "block/block_device.h"

namespace hostvisor::testing {

class MemoryImage : public block::BlockDevice {
 public:
  explicit MemoryImage(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  const char* format_name() const override { return "memory"; }
  uint64_t virtual_size() const override { return bytes_.size(); }
  bool read_only() const override { return true; }
  Result<void> readv(uint64_t offset, std::span<const iovec> iov) override {
    uint64_t total = 0;
    for (const auto& v : iov) total += v.iov_len;
    HV_TRY(check_range(offset, total));
    for (const auto& v : iov) {
      std::memcpy(v.iov_base, bytes_.data() + offset, v.iov_len);
      offset += v.iov_len;
    }
    return ok();
  }
  Result<void> writev(uint64_t, std::span<const iovec>) override { __builtin_trap(); }
  Result<void> flush() override { return ok(); }
  Result<void> discard(uint64_t, uint64_t) override { __builtin_trap(); }

 private:
  std::vector<uint8_t> bytes_;
};

// An image of `sectors` 2048-byte sectors whose every byte says where it
// is: byte i of sector s is (s * 7 + i) & 0xff.
inline std::vector<uint8_t> patterned_sectors(uint32_t sectors) {
  std::vector<uint8_t> bytes(uint64_t{sectors} * 2048);
  for (uint64_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>((i / 2048) * 7 + i % 2048);
  return bytes;
}

}  // namespace hostvisor::testing
