// A CFI parallel NOR flash bank with the Intel/Sharp command set (CFI
// primary command set 0x0001), one byte wide, as OVMF's
// QemuFlashFvbServicesRuntimeDxe drives QEMU's pflash: read array (0xFF),
// read status (0x70), clear status (0x50), byte program (0x10 or 0x40, then
// the data), block erase (0x20, then 0xD0 in the block), read identifier
// (0x90) and CFI query (0x98).
//
// It serves OVMF's variable store: the bank is the device's own copy of
// the store, and every program or erase is also written to `backing` (the
// per-VM vars file) at once, so what the firmware stored survives the run.
// The bank holds no code, so it is MMIO on both backends: every access is
// an exit, which is what lets writes be commands. (The code bank next to it
// is plain guest memory, executed in place.)
//
// Like real flash, a program only clears bits (new = old & data) and an
// erase sets a whole block to 0xFF. Operations complete at once: the
// status register's ready bit is set when one finishes. It reads 0 after a
// clear (OVMF's probe tells flash from RAM and ROM by that 0), and the
// program and erase error bits say when the bank is read-only or a
// sequence was wrong.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "base/state_codec.h"
#include "devices/bus/bus_device.h"

namespace hostvisor {

namespace cfi {
// Commands (the first byte written in read-array or status mode).
inline constexpr uint8_t kProgram = 0x10;
inline constexpr uint8_t kProgramAlternate = 0x40;
inline constexpr uint8_t kBlockErase = 0x20;
inline constexpr uint8_t kClearStatus = 0x50;
inline constexpr uint8_t kReadStatus = 0x70;
inline constexpr uint8_t kReadIdentifier = 0x90;
inline constexpr uint8_t kQuery = 0x98;
inline constexpr uint8_t kEraseConfirm = 0xd0;
inline constexpr uint8_t kReadArray = 0xff;
// Status register bits.
inline constexpr uint8_t kStatusReady = 0x80;
inline constexpr uint8_t kStatusEraseError = 0x20;
inline constexpr uint8_t kStatusProgramError = 0x10;
inline constexpr uint8_t kStatusBlockLocked = 0x02;
// Identifier mode: manufacturer at offset 0, device at offset 1.
inline constexpr uint8_t kManufacturerIntel = 0x89;
inline constexpr uint8_t kDeviceId = 0x18;
}  // namespace cfi

class CfiFlash : public BusDevice {
 public:
  // A bank holding `contents` (a whole number of `block_size` blocks;
  // block_size a power of two of at least 256 bytes). A valid `backing` fd
  // receives every change at the same offset; a read-only bank refuses
  // programs and erases with the status error bits.
  static Result<std::shared_ptr<CfiFlash>> create(std::vector<uint8_t> contents, uint64_t block_size,
                                                  UniqueFd backing, bool read_only);

  std::string_view name() const override { return "cfi-flash"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  uint64_t size() const { return array_.size(); }
  // The bank's bytes (for tests and the machine's checks).
  std::vector<uint8_t> contents() const;

  enum class Mode : uint8_t { kReadArray, kReadStatus, kReadIdentifier, kQuery, kProgramSetup, kEraseSetup };
  // Snapshot: the command state. The array itself is the vars file's.
  struct State {
    Mode mode = Mode::kReadArray;
    uint8_t status = 0;
  };
  State save() const;
  Result<void> restore(const State& state);
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  CfiFlash(std::vector<uint8_t> contents, uint64_t block_size, UniqueFd backing, bool read_only);
  uint8_t query_byte(uint64_t offset) const;
  void program(uint64_t offset, std::span<const uint8_t> data);
  void erase_block(uint64_t offset);
  void persist(uint64_t offset, uint64_t length);

  mutable std::mutex mutex_;
  std::vector<uint8_t> array_;
  const uint64_t block_size_;
  UniqueFd backing_;
  const bool read_only_;
  Mode mode_ = Mode::kReadArray;
  uint8_t status_ = 0;
  bool persist_failed_ = false;  // warned once
};

}  // namespace hostvisor
