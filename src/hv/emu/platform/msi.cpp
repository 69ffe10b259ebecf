#include "hv/emu/platform/msi.h"

#include <string>

namespace hostvisor::emu {

namespace {
std::string hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

Result<ApicMessage> decode_msi(uint64_t address, uint32_t data) {
  if ((address & ~uint64_t{0xfffff}) != kMsiAddressBase) {
    return Error(ErrorCode::kGuest, "MSI address " + hex(address) +
                                        " is outside the interrupt window 0xfee00000-0xfeefffff; the device's "
                                        "MSI address register was programmed wrongly");
  }
  ApicMessage m;
  m.destination = static_cast<uint32_t>((address >> 12) & 0xff);
  m.logical = (address >> 2) & 1;
  const bool redirection_hint = (address >> 3) & 1;
  m.vector = static_cast<uint8_t>(data & 0xff);
  const uint32_t mode = (data >> 8) & 7;
  if (mode == 3 || mode == 6) {
    return Error(ErrorCode::kGuest, "MSI data " + hex(data) + " uses delivery mode " + std::to_string(mode) +
                                        ", which is reserved for MSIs; the message is dropped");
  }
  m.mode = static_cast<DeliveryMode>(mode);
  if (redirection_hint && m.mode == DeliveryMode::kFixed) m.mode = DeliveryMode::kLowestPriority;
  m.level_triggered = (data >> 15) & 1;
  m.assert_level = m.level_triggered ? ((data >> 14) & 1) != 0 : true;
  return m;
}

}  // namespace hostvisor::emu
