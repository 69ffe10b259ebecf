#include "devices/ahci/ahci_command.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace hostvisor::ahci {

namespace {

uint32_t le32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 | uint32_t{b[at + 2]} << 16 | uint32_t{b[at + 3]} << 24;
}

Error guest_error(const std::string& what) { return Error(ErrorCode::kGuest, "AHCI: " + what); }

}  // namespace

Result<Command> read_command(const GuestMemory& memory, uint64_t command_list, unsigned slot) {
  if (slot >= kCommandSlots) return guest_error("command slot " + std::to_string(slot) + " does not exist");
  std::array<uint8_t, kCommandHeaderBytes> header{};
  const uint64_t header_address = command_list + slot * kCommandHeaderBytes;
  if (header_address < command_list || !memory.read(GuestAddress(header_address), header))
    return guest_error("the command header of slot " + std::to_string(slot) + " is outside RAM");
  Command command;
  command.header_flags = le32(header, 0);
  // CTBA's low 7 bits are reserved (128-byte alignment).
  command.table = (uint64_t{le32(header, 12)} << 32 | le32(header, 8)) & ~(kTableAlign - 1);

  const uint32_t entries = command.header_flags >> kHeaderPrdtlShift;
  if (command.table > UINT64_MAX - kTablePrdt - uint64_t{entries} * kPrdBytes)
    return guest_error("the command table wraps around the address space");

  const uint32_t cfis_dwords = command.header_flags & kHeaderCflMask;
  // A register H2D FIS is 5 dwords; the field allows up to 16.
  if (cfis_dwords < 5 || cfis_dwords > 16)
    return guest_error("a command FIS of " + std::to_string(cfis_dwords) + " dwords holds no register FIS");
  if (!memory.read(GuestAddress(command.table + kTableCfis), std::span(command.cfis).first(cfis_dwords * 4)))
    return guest_error("the command table is outside RAM");
  if (command.cfis[0] != kFisRegH2d)
    return guest_error("command FIS type " + std::to_string(command.cfis[0]) + " is not a register H2D FIS");
  if (command.atapi() && !memory.read(GuestAddress(command.table + kTableAcmd), command.acmd))
    return guest_error("the ATAPI command is outside RAM");

  if (entries > kMaxPrdtEntries)
    return guest_error("a PRDT of " + std::to_string(entries) + " entries is longer than the " +
                       std::to_string(kMaxPrdtEntries) + " taken");
  if (entries > 0) {
    std::vector<uint8_t> table(entries * kPrdBytes);
    if (!memory.read(GuestAddress(command.table + kTablePrdt), table)) return guest_error("the PRDT is outside RAM");
    command.prdt.reserve(entries);
    for (uint32_t i = 0; i < entries; ++i) {
      const auto entry = std::span<const uint8_t>(table).subspan(i * kPrdBytes, kPrdBytes);
      PhysicalRegion region;
      // DBA's bit 0 is reserved (word alignment); DBC is the byte count - 1.
      region.address = (uint64_t{le32(entry, 4)} << 32 | le32(entry, 0)) & ~uint64_t{1};
      region.bytes = (le32(entry, 12) & kPrdDbcMask) + 1;
      command.prdt.push_back(region);
      command.data_room += region.bytes;
    }
  }
  return command;
}

bool PrdtWriter::write(uint64_t offset, std::span<const uint8_t> bytes) {
  if (offset < cursor_offset_) {
    cursor_ = 0;
    cursor_offset_ = 0;
  }
  // Find the region holding `offset`.
  while (cursor_ < prdt_.size() && offset >= cursor_offset_ + prdt_[cursor_].bytes) {
    cursor_offset_ += prdt_[cursor_].bytes;
    ++cursor_;
  }
  while (!bytes.empty()) {
    if (cursor_ >= prdt_.size()) return false;
    const PhysicalRegion& region = prdt_[cursor_];
    const uint64_t within = offset - cursor_offset_;
    const uint64_t n = std::min<uint64_t>(bytes.size(), region.bytes - within);
    const uint64_t address = region.address + within;
    if (address < region.address || !memory_.write(GuestAddress(address), bytes.first(n))) return false;
    memory_.note_dma_write(GuestAddress(address), n);
    bytes = bytes.subspan(n);
    offset += n;
    if (within + n == region.bytes) {
      cursor_offset_ += region.bytes;
      ++cursor_;
    }
  }
  return true;
}

}  // namespace hostvisor::ahci
