#include "net/internet_checksum.h"

namespace hostvisor::net {

uint32_t checksum_add(std::span<const uint8_t> bytes, uint32_t sum) {
  uint64_t total = sum;
  size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) total += static_cast<uint32_t>(bytes[i] << 8 | bytes[i + 1]);
  if (i < bytes.size()) total += static_cast<uint32_t>(bytes[i] << 8);
  while (total >> 32) total = (total & 0xffffffff) + (total >> 32);
  return static_cast<uint32_t>(total);
}

uint16_t checksum_finish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

bool complete_partial_checksum(std::span<uint8_t> frame, size_t csum_start, size_t csum_offset) {
  if (csum_start > frame.size() || csum_offset > frame.size() - csum_start ||
      frame.size() - csum_start - csum_offset < 2)
    return false;
  const uint16_t value = checksum_finish(checksum_add(frame.subspan(csum_start)));
  frame[csum_start + csum_offset] = static_cast<uint8_t>(value >> 8);
  frame[csum_start + csum_offset + 1] = static_cast<uint8_t>(value);
  return true;
}

}  // namespace hostvisor::net
