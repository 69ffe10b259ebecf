// The 4 KiB configuration space of one PCI function (type 0 header), with the
// write semantics of real hardware: every byte has a mask of guest-writable
// bits, some status bits are write-one-to-clear, and BAR registers answer a
// size probe (all-ones write) with their size mask. The device model sets the
// space up before the guest runs and then reads/writes it "from the device
// side" with the raw setters, which ignore the masks.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "base/result.h"
#include "base/state_codec.h"

namespace hostvisor {

namespace pci_reg {
inline constexpr uint16_t kVendorId = 0x00;
inline constexpr uint16_t kDeviceId = 0x02;
inline constexpr uint16_t kCommand = 0x04;
inline constexpr uint16_t kStatus = 0x06;
inline constexpr uint16_t kRevision = 0x08;
inline constexpr uint16_t kClassCode = 0x09;  // 3 bytes: prog-if, subclass, class
inline constexpr uint16_t kCacheLineSize = 0x0c;
inline constexpr uint16_t kLatencyTimer = 0x0d;
inline constexpr uint16_t kHeaderType = 0x0e;
inline constexpr uint16_t kBar0 = 0x10;
inline constexpr uint16_t kSubsystemVendorId = 0x2c;
inline constexpr uint16_t kSubsystemId = 0x2e;
inline constexpr uint16_t kExpansionRom = 0x30;
inline constexpr uint16_t kCapabilitiesPointer = 0x34;
inline constexpr uint16_t kInterruptLine = 0x3c;
inline constexpr uint16_t kInterruptPin = 0x3d;
inline constexpr uint16_t kFirstCapability = 0x40;  // standard capabilities live in 0x40-0xFF
}  // namespace pci_reg

namespace pci_command {
inline constexpr uint16_t kIoSpace = 1u << 0;
inline constexpr uint16_t kMemorySpace = 1u << 1;
inline constexpr uint16_t kBusMaster = 1u << 2;
inline constexpr uint16_t kParityErrorResponse = 1u << 6;
inline constexpr uint16_t kSerrEnable = 1u << 8;
inline constexpr uint16_t kInterruptDisable = 1u << 10;
}  // namespace pci_command

namespace pci_status {
inline constexpr uint16_t kInterruptStatus = 1u << 3;
inline constexpr uint16_t kCapabilitiesList = 1u << 4;
// Error bits the guest clears by writing one.
inline constexpr uint16_t kWriteOneToClear = 0xf900;
}  // namespace pci_status

namespace pci_cap_id {
inline constexpr uint8_t kVendorSpecific = 0x09;
inline constexpr uint8_t kMsix = 0x11;
}  // namespace pci_cap_id

enum class PciBarKind : uint8_t { kMemory32, kMemory64, kIo };

struct PciBarInfo {
  PciBarKind kind = PciBarKind::kMemory32;
  uint64_t size = 0;  // 0: BAR not implemented
  bool prefetchable = false;
};

class PciConfigSpace {
 public:
  static constexpr size_t kSize = 4096;
  static constexpr int kBarCount = 6;

  struct Identity {
    uint16_t vendor_id = 0;
    uint16_t device_id = 0;
    uint8_t revision = 0;
    uint32_t class_code = 0;  // class << 16 | subclass << 8 | prog-if
    uint16_t subsystem_vendor_id = 0;
    uint16_t subsystem_id = 0;
  };

  explicit PciConfigSpace(const Identity& identity);

  // --- Guest side: accesses of 1, 2 or 4 bytes that do not cross a dword.
  // Anything else reads all-ones / is dropped (the root splits odd accesses).
  uint32_t read(uint16_t offset, unsigned size) const;
  void write(uint16_t offset, unsigned size, uint32_t value);

  // --- Set-up (before the guest runs).
  // Declares BAR `index` (a 64-bit BAR also takes index + 1). Memory BARs are
  // a power of two of at least 16 bytes, I/O BARs 4 to 256 bytes.
  Result<void> add_bar(int index, const PciBarInfo& info);
  // Appends a capability to the list. `body` is the capability from its
  // third byte on (after ID and next pointer); `writable` (same length or
  // empty) gives the guest-writable bits of the body. Returns its offset.
  Result<uint16_t> add_capability(uint8_t id, std::span<const uint8_t> body, std::span<const uint8_t> writable = {});
  void set_interrupt_pin(uint8_t pin);  // 0: none, 1-4: INTA-INTD
  // Marks bits guest-writable (for device-specific registers).
  void set_writable(uint16_t offset, std::span<const uint8_t> mask);

  // --- Device side (no masks).
  uint8_t raw_u8(uint16_t offset) const { return offset < kSize ? bytes_[offset] : 0xff; }
  uint16_t raw_u16(uint16_t offset) const;
  uint32_t raw_u32(uint16_t offset) const;
  void set_raw_u8(uint16_t offset, uint8_t value);
  void set_raw_u16(uint16_t offset, uint16_t value);
  void set_raw_u32(uint16_t offset, uint32_t value);

  uint16_t command() const { return raw_u16(pci_reg::kCommand); }
  // Mirrors a device's INTx state into Status.InterruptStatus.
  void set_interrupt_status(bool pending);

  const PciBarInfo& bar_info(int index) const { return bars_[index]; }
  // The address the guest programmed into BAR `index` (flags stripped).
  uint64_t bar_address(int index) const;
  // Programs a BAR as firmware would (device side, no probing semantics).
  void set_bar_address(int index, uint64_t address);
  // The address the BAR decodes at right now, or nothing if decoding is off
  // (command register), the BAR is unimplemented, unprogrammed (0), or lies
  // where it cannot decode (I/O above 64 KiB, wraps the address space).
  std::optional<uint64_t> bar_decode_address(int index) const;
  // Finds the BAR index that a config offset belongs to, if any.
  static std::optional<int> bar_index_for_offset(uint16_t offset);

  // Snapshot: the register bytes. restore() refuses a state whose read-only
  // bytes (identity, BAR flags, capability layout) differ from this device's:
  // it was taken from a different device model.
  struct State {
    std::array<uint8_t, kSize> bytes{};
  };
  State save() const { return State{bytes_}; }
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

  // Resets guest-writable state to power-on values (command, BARs, lines),
  // keeping identity and capability layout. Capability owners reset their own.
  void reset();

 private:
  void apply_bar_masks(int index);

  std::array<uint8_t, kSize> bytes_{};
  std::array<uint8_t, kSize> writable_{};
  std::array<uint8_t, kSize> write_one_to_clear_{};
  std::array<PciBarInfo, kBarCount> bars_{};
  uint16_t last_capability_ = 0;  // offset of the last capability, 0 if none
  uint16_t next_capability_ = pci_reg::kFirstCapability;
};

}  // namespace hostvisor
