#include "devices/pci/pci_config_space.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

namespace hostvisor {

namespace {
constexpr uint32_t kMemBarFlagsMask = 0xf;
constexpr uint32_t kIoBarFlagsMask = 0x3;
constexpr uint32_t kBarIo = 0x1;
constexpr uint32_t kBarMem64 = 0x4;
constexpr uint32_t kBarPrefetchable = 0x8;
}  // namespace

PciConfigSpace::PciConfigSpace(const Identity& id) {
  set_raw_u16(pci_reg::kVendorId, id.vendor_id);
  set_raw_u16(pci_reg::kDeviceId, id.device_id);
  set_raw_u8(pci_reg::kRevision, id.revision);
  set_raw_u8(pci_reg::kClassCode, static_cast<uint8_t>(id.class_code));
  set_raw_u8(pci_reg::kClassCode + 1, static_cast<uint8_t>(id.class_code >> 8));
  set_raw_u8(pci_reg::kClassCode + 2, static_cast<uint8_t>(id.class_code >> 16));
  set_raw_u8(pci_reg::kHeaderType, 0);  // type 0, single function
  set_raw_u16(pci_reg::kSubsystemVendorId, id.subsystem_vendor_id);
  set_raw_u16(pci_reg::kSubsystemId, id.subsystem_id);

  constexpr uint16_t command_writable = pci_command::kIoSpace | pci_command::kMemorySpace | pci_command::kBusMaster |
                                        pci_command::kParityErrorResponse | pci_command::kSerrEnable |
                                        pci_command::kInterruptDisable;
  writable_[pci_reg::kCommand] = static_cast<uint8_t>(command_writable);
  writable_[pci_reg::kCommand + 1] = static_cast<uint8_t>(command_writable >> 8);
  write_one_to_clear_[pci_reg::kStatus] = static_cast<uint8_t>(pci_status::kWriteOneToClear);
  write_one_to_clear_[pci_reg::kStatus + 1] = static_cast<uint8_t>(pci_status::kWriteOneToClear >> 8);
  writable_[pci_reg::kCacheLineSize] = 0xff;
  writable_[pci_reg::kLatencyTimer] = 0xff;
  writable_[pci_reg::kInterruptLine] = 0xff;
}

uint16_t PciConfigSpace::raw_u16(uint16_t offset) const {
  if (offset > kSize - 2) return 0xffff;
  return static_cast<uint16_t>(bytes_[offset] | bytes_[offset + 1] << 8);
}

uint32_t PciConfigSpace::raw_u32(uint16_t offset) const {
  if (offset > kSize - 4) return 0xffffffff;
  uint32_t v;
  std::memcpy(&v, &bytes_[offset], 4);
  return v;
}

void PciConfigSpace::set_raw_u8(uint16_t offset, uint8_t value) {
  if (offset < kSize) bytes_[offset] = value;
}
void PciConfigSpace::set_raw_u16(uint16_t offset, uint16_t value) {
  if (offset > kSize - 2) return;
  bytes_[offset] = static_cast<uint8_t>(value);
  bytes_[offset + 1] = static_cast<uint8_t>(value >> 8);
}
void PciConfigSpace::set_raw_u32(uint16_t offset, uint32_t value) {
  if (offset > kSize - 4) return;
  std::memcpy(&bytes_[offset], &value, 4);
}

static bool valid_access(uint16_t offset, unsigned size) {
  if (size != 1 && size != 2 && size != 4) return false;
  if (offset >= PciConfigSpace::kSize) return false;
  return (offset % 4) + size <= 4;  // inside one dword
}

uint32_t PciConfigSpace::read(uint16_t offset, unsigned size) const {
  if (!valid_access(offset, size)) return 0xffffffff;
  uint32_t v = 0;
  for (unsigned i = 0; i < size; ++i) v |= uint32_t{bytes_[offset + i]} << (8 * i);
  return v;
}

void PciConfigSpace::write(uint16_t offset, unsigned size, uint32_t value) {
  if (!valid_access(offset, size)) return;
  for (unsigned i = 0; i < size; ++i) {
    const uint16_t at = offset + i;
    const uint8_t in = static_cast<uint8_t>(value >> (8 * i));
    uint8_t b = bytes_[at];
    b = static_cast<uint8_t>((b & ~writable_[at]) | (in & writable_[at]));
    b = static_cast<uint8_t>(b & ~(in & write_one_to_clear_[at]));
    bytes_[at] = b;
  }
}

void PciConfigSpace::set_writable(uint16_t offset, std::span<const uint8_t> mask) {
  for (size_t i = 0; i < mask.size() && offset + i < kSize; ++i) writable_[offset + i] = mask[i];
}

Result<void> PciConfigSpace::add_bar(int index, const PciBarInfo& info) {
  const bool is64 = info.kind == PciBarKind::kMemory64;
  if (index < 0 || index >= kBarCount || (is64 && index + 1 >= kBarCount))
    return Error(ErrorCode::kInvalidArgument, "PCI BAR index " + std::to_string(index) + " does not exist");
  if (bars_[index].size != 0 || (is64 && bars_[index + 1].size != 0))
    return Error(ErrorCode::kBusy, "PCI BAR " + std::to_string(index) + " is already declared");
  if (index > 0 && bars_[index - 1].kind == PciBarKind::kMemory64 && bars_[index - 1].size != 0)
    return Error(ErrorCode::kBusy, "PCI BAR " + std::to_string(index) + " is the upper half of a 64-bit BAR");
  if (!std::has_single_bit(info.size)) return Error(ErrorCode::kInvalidArgument, "PCI BAR size must be a power of two");
  if (info.kind == PciBarKind::kIo && (info.size < 4 || info.size > 256))
    return Error(ErrorCode::kInvalidArgument, "PCI I/O BARs are 4 to 256 bytes");
  if (info.kind != PciBarKind::kIo && info.size < 16)
    return Error(ErrorCode::kInvalidArgument, "PCI memory BARs are at least 16 bytes");
  if (info.kind == PciBarKind::kMemory32 && info.size > (1ull << 31))
    return Error(ErrorCode::kInvalidArgument, "a 32-bit PCI memory BAR is at most 2 GiB");
  bars_[index] = info;
  if (is64) bars_[index + 1] = PciBarInfo{PciBarKind::kMemory64, 0, false};  // upper half, marked by size 0
  uint32_t flags = 0;
  if (info.kind == PciBarKind::kIo) flags = kBarIo;
  if (is64) flags |= kBarMem64;
  if (info.prefetchable && info.kind != PciBarKind::kIo) flags |= kBarPrefetchable;
  set_raw_u32(pci_reg::kBar0 + 4 * index, flags);
  if (is64) set_raw_u32(pci_reg::kBar0 + 4 * (index + 1), 0);
  apply_bar_masks(index);
  return ok();
}

void PciConfigSpace::apply_bar_masks(int index) {
  const PciBarInfo& b = bars_[index];
  const uint64_t size_mask = ~(b.size - 1);
  const uint32_t flags_mask = b.kind == PciBarKind::kIo ? kIoBarFlagsMask : kMemBarFlagsMask;
  uint32_t low = static_cast<uint32_t>(size_mask) & ~flags_mask;
  if (b.kind == PciBarKind::kIo) low &= 0xffff;  // I/O addresses are 16 bits on x86
  std::array<uint8_t, 4> m;
  std::memcpy(m.data(), &low, 4);
  set_writable(pci_reg::kBar0 + 4 * index, m);
  if (b.kind == PciBarKind::kMemory64) {
    const uint32_t high = static_cast<uint32_t>(size_mask >> 32);
    std::memcpy(m.data(), &high, 4);
    set_writable(pci_reg::kBar0 + 4 * (index + 1), m);
  }
}

Result<uint16_t> PciConfigSpace::add_capability(uint8_t id, std::span<const uint8_t> body,
                                                std::span<const uint8_t> writable) {
  if (!writable.empty() && writable.size() != body.size())
    return Error(ErrorCode::kInternal, "PCI capability writable mask does not match its body");
  // Capabilities are dword-aligned and must fit the 256-byte legacy space.
  const uint64_t length = 2 + body.size();
  const uint16_t at = next_capability_;
  if (at + length > 0x100)
    return Error(ErrorCode::kOutOfRange, "PCI capability list is full (legacy config space is 256 bytes)");
  set_raw_u8(at, id);
  set_raw_u8(at + 1, 0);
  for (size_t i = 0; i < body.size(); ++i) set_raw_u8(static_cast<uint16_t>(at + 2 + i), body[i]);
  if (!writable.empty()) set_writable(static_cast<uint16_t>(at + 2), writable);
  if (last_capability_ == 0) {
    set_raw_u8(pci_reg::kCapabilitiesPointer, static_cast<uint8_t>(at));
    set_raw_u16(pci_reg::kStatus, raw_u16(pci_reg::kStatus) | pci_status::kCapabilitiesList);
  } else {
    set_raw_u8(last_capability_ + 1, static_cast<uint8_t>(at));
  }
  last_capability_ = at;
  next_capability_ = static_cast<uint16_t>((at + length + 3) & ~3u);
  return at;
}

void PciConfigSpace::set_interrupt_pin(uint8_t pin) { set_raw_u8(pci_reg::kInterruptPin, pin <= 4 ? pin : 0); }

void PciConfigSpace::set_interrupt_status(bool pending) {
  uint16_t s = raw_u16(pci_reg::kStatus);
  s = pending ? (s | pci_status::kInterruptStatus) : (s & ~pci_status::kInterruptStatus);
  set_raw_u16(pci_reg::kStatus, s);
}

uint64_t PciConfigSpace::bar_address(int index) const {
  if (index < 0 || index >= kBarCount || bars_[index].size == 0) return 0;
  const PciBarInfo& b = bars_[index];
  const uint32_t low = raw_u32(pci_reg::kBar0 + 4 * index);
  if (b.kind == PciBarKind::kIo) return low & ~kIoBarFlagsMask;
  uint64_t address = low & ~kMemBarFlagsMask;
  if (b.kind == PciBarKind::kMemory64) address |= uint64_t{raw_u32(pci_reg::kBar0 + 4 * (index + 1))} << 32;
  return address;
}

void PciConfigSpace::set_bar_address(int index, uint64_t address) {
  if (index < 0 || index >= kBarCount || bars_[index].size == 0) return;
  const PciBarInfo& b = bars_[index];
  const uint16_t reg = pci_reg::kBar0 + 4 * index;
  const uint32_t flags_mask = b.kind == PciBarKind::kIo ? kIoBarFlagsMask : kMemBarFlagsMask;
  const uint64_t aligned = address & ~(b.size - 1);
  set_raw_u32(reg, (raw_u32(reg) & flags_mask) | (static_cast<uint32_t>(aligned) & ~flags_mask));
  if (b.kind == PciBarKind::kMemory64) set_raw_u32(reg + 4, static_cast<uint32_t>(aligned >> 32));
}

std::optional<uint64_t> PciConfigSpace::bar_decode_address(int index) const {
  if (index < 0 || index >= kBarCount || bars_[index].size == 0) return std::nullopt;
  const PciBarInfo& b = bars_[index];
  const uint16_t enable = b.kind == PciBarKind::kIo ? pci_command::kIoSpace : pci_command::kMemorySpace;
  if (!(command() & enable)) return std::nullopt;
  const uint64_t address = bar_address(index);
  if (address == 0) return std::nullopt;
  const uint64_t last = address + (b.size - 1);
  if (last < address) return std::nullopt;
  if (b.kind == PciBarKind::kIo && last > 0xffff) return std::nullopt;
  return address;
}

std::optional<int> PciConfigSpace::bar_index_for_offset(uint16_t offset) {
  if (offset < pci_reg::kBar0 || offset >= pci_reg::kBar0 + 4 * kBarCount) return std::nullopt;
  return (offset - pci_reg::kBar0) / 4;
}

Result<void> PciConfigSpace::restore(const State& state) {
  for (size_t i = 0; i < kSize; ++i) {
    // Status' low byte holds device-managed bits (interrupt status); the
    // owner restores those through its own state.
    if (i == pci_reg::kStatus) continue;
    if (writable_[i] == 0 && write_one_to_clear_[i] == 0 && state.bytes[i] != bytes_[i]) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "snapshot of PCI function %04x:%04x differs in read-only config byte %#zx; it belongs to "
                    "another device model or hostvisor version",
                    raw_u16(pci_reg::kVendorId), raw_u16(pci_reg::kDeviceId), i);
      return Error(ErrorCode::kCorrupt, buf);
    }
  }
  bytes_ = state.bytes;
  return ok();
}

void PciConfigSpace::reset() {
  set_raw_u16(pci_reg::kCommand, 0);
  set_raw_u16(pci_reg::kStatus, raw_u16(pci_reg::kStatus) & pci_status::kCapabilitiesList);
  set_raw_u8(pci_reg::kCacheLineSize, 0);
  set_raw_u8(pci_reg::kLatencyTimer, 0);
  set_raw_u8(pci_reg::kInterruptLine, 0);
  for (int i = 0; i < kBarCount; ++i) {
    if (bars_[i].size != 0) set_bar_address(i, 0);
  }
}

void PciConfigSpace::encode_state(StateWriter& out, const State& s) { out.put_raw(s.bytes); }

PciConfigSpace::State PciConfigSpace::decode_state(StateReader& in) {
  State s;
  in.get_raw(s.bytes);
  return s;
}

}  // namespace hostvisor
