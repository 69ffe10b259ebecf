// One AHCI command as the guest lays it out (AHCI 1.3.1, 4.2.2-4.2.3): the
// command header in the command list, the command table it points to
// (command FIS, ATAPI command, physical region descriptor table), read
// from guest RAM and checked before anything runs; and the data-in path
// that scatters bytes over the PRDT's regions.
//
// All of it is guest input. Every address and length is checked against
// guest RAM with overflow-safe arithmetic (GuestMemory); the FIS length
// must hold a register FIS; the PRDT has at most kMaxPrdtEntries entries
// (Linux uses 168, SeaBIOS 1), each region at most 4 MiB (the DBC field),
// so a command never makes the host read more than 64 KiB of table or
// hold more than that.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "devices/ahci/ahci_spec.h"
#include "memory/guest_memory.h"

namespace hostvisor::ahci {

// Entries a PRDT may have here; the format allows 65535.
inline constexpr uint32_t kMaxPrdtEntries = 4096;

struct PhysicalRegion {
  uint64_t address = 0;
  uint32_t bytes = 0;  // 2 to 4 MiB
};

struct Command {
  uint32_t header_flags = 0;                    // DW0 of the command header
  uint64_t table = 0;                           // command table base
  std::array<uint8_t, kTableCfisBytes> cfis{};  // the command FIS (CFL dwords; the rest zero)
  std::array<uint8_t, kTableAcmdBytes> acmd{};  // the ATAPI command packet
  std::vector<PhysicalRegion> prdt;
  uint64_t data_room = 0;  // the regions' bytes together

  bool atapi() const { return header_flags & kHeaderAtapi; }
  bool write() const { return header_flags & kHeaderWrite; }
  // A register FIS carrying a command (C set), not a device control update.
  bool is_command_fis() const { return cfis[1] & kFisH2dCommandBit; }
};

// The command in slot `slot` (0-31) of the command list at `command_list`.
// Errors (kGuest) say what is wrong: a header or table outside RAM, a FIS
// that is no register H2D FIS or too short for one, a PRDT too long or
// outside RAM, a region of zero bytes.
Result<Command> read_command(const GuestMemory& memory, uint64_t command_list, unsigned slot);

// Writes data-in bytes at offsets of the PRDT's regions taken end to end
// (the sink of MmcCdrom and AtapiCdrom). Reports each write as DMA.
class PrdtWriter {
 public:
  PrdtWriter(GuestMemory& memory, std::span<const PhysicalRegion> prdt) : memory_(memory), prdt_(prdt) {}
  // False if the bytes do not fit the regions or a region is not in RAM.
  bool write(uint64_t offset, std::span<const uint8_t> bytes);

 private:
  GuestMemory& memory_;
  std::span<const PhysicalRegion> prdt_;
  // Where the last write ended: writes come in order, so the next one
  // starts its search there.
  size_t cursor_ = 0;
  uint64_t cursor_offset_ = 0;
};

}  // namespace hostvisor::ahci
