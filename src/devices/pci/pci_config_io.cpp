#include "devices/pci/pci_config_io.h"

#include <algorithm>

namespace hostvisor {

namespace {
constexpr uint32_t kEnable = 1u << 31;
// Enable, bus, device, function, dword-aligned register; the rest reads 0.
constexpr uint32_t kAddressMask = 0x80fffffc;
constexpr uint64_t kResetControl = 1;  // 0xCF9
constexpr uint8_t kResetCpu = 1u << 2;
constexpr uint64_t kData = 4;  // 0xCFC

uint32_t load_le(std::span<const uint8_t> data) {
  uint32_t v = 0;
  for (size_t i = 0; i < data.size() && i < 4; ++i) v |= uint32_t{data[i]} << (8 * i);
  return v;
}
void store_le(uint32_t v, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = i < 4 ? static_cast<uint8_t>(v >> (8 * i)) : 0xff;
}
}  // namespace

uint32_t PciConfigIo::config_address() const {
  std::lock_guard lock(mutex_);
  return address_;
}

PciConfigIo::State PciConfigIo::save() const {
  std::lock_guard lock(mutex_);
  return State{address_, reset_control_};
}

void PciConfigIo::restore(const State& state) {
  std::lock_guard lock(mutex_);
  address_ = state.config_address & kAddressMask;
  reset_control_ = state.reset_control & ~kResetCpu;
}

void PciConfigIo::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset == 0 && data.size() == 4) {
    store_le(config_address(), data);
    return;
  }
  if (offset == kResetControl && data.size() == 1) {
    std::lock_guard lock(mutex_);
    data[0] = reset_control_;
    return;
  }
  if (offset >= kData && (data.size() == 1 || data.size() == 2 || data.size() == 4) &&
      (offset - kData) + data.size() <= 4) {
    const uint32_t address = config_address();
    if (!(address & kEnable)) {
      std::fill(data.begin(), data.end(), 0xff);
      return;
    }
    const PciAddress bdf{static_cast<uint8_t>(address >> 16), static_cast<uint8_t>((address >> 11) & 0x1f),
                         static_cast<uint8_t>((address >> 8) & 0x7)};
    const uint16_t reg = static_cast<uint16_t>((address & 0xfc) + (offset - kData));
    store_le(root_.config_read(bdf, reg, static_cast<unsigned>(data.size())), data);
    return;
  }
  std::fill(data.begin(), data.end(), 0xff);
}

void PciConfigIo::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == 0 && data.size() == 4) {
    std::lock_guard lock(mutex_);
    address_ = load_le(data) & kAddressMask;
    return;
  }
  if (offset == kResetControl && data.size() == 1) {
    bool reset = false;
    {
      std::lock_guard lock(mutex_);
      // RST_CPU takes effect on its 0 -> 1 transition (the value in bit 1,
      // SYS_RST, only chooses hard vs soft reset; both mean reset here).
      reset = (data[0] & kResetCpu) && !(reset_control_ & kResetCpu);
      reset_control_ = data[0] & ~kResetCpu;
    }
    if (reset && system_) system_->request_reset();
    return;
  }
  if (offset >= kData && (data.size() == 1 || data.size() == 2 || data.size() == 4) &&
      (offset - kData) + data.size() <= 4) {
    const uint32_t address = config_address();
    if (!(address & kEnable)) return;
    const PciAddress bdf{static_cast<uint8_t>(address >> 16), static_cast<uint8_t>((address >> 11) & 0x1f),
                         static_cast<uint8_t>((address >> 8) & 0x7)};
    const uint16_t reg = static_cast<uint16_t>((address & 0xfc) + (offset - kData));
    root_.config_write(bdf, reg, static_cast<unsigned>(data.size()), load_le(data));
  }
  // Other widths/offsets (e.g. byte writes to 0xCF8) are not config cycles: dropped.
}

void PciConfigIo::encode_state(StateWriter& out, const State& s) {
  out.put(s.config_address);
  out.put(s.reset_control);
}

PciConfigIo::State PciConfigIo::decode_state(StateReader& in) {
  State s;
  s.config_address = in.get<uint32_t>();
  s.reset_control = in.get<uint8_t>();
  return s;
}

}  // namespace hostvisor
