// The header file of a snapshot: what the snapshot is of and how to check
// the rest of it. The machine configuration is an opaque blob here (the VMM
// encodes its own MachineConfig); the snapshot layer knows only its length.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::snapshot {

struct MemoryRegionRecord {
  uint64_t guest_address = 0;
  uint64_t size = 0;
  uint64_t file_offset = 0;  // where the region starts in DIR/memory
  bool operator==(const MemoryRegionRecord&) const = default;
};

// A disk image frozen into the snapshot: restore refuses a file that is not
// the one the snapshot saw.
struct FrozenDisk {
  uint32_t disk_index = 0;  // the machine's disk it was
  std::string file;         // name inside the snapshot directory
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FrozenDisk&) const = default;
};

struct SnapshotHeader {
  uint32_t format_version = 0;  // of the file read; what is written is always kFormatVersion
  std::string hostvisor_version;
  std::vector<uint8_t> machine_config;
  std::vector<std::string> devices;  // every device's record tag, in machine order
  std::vector<MemoryRegionRecord> regions;
  uint64_t memory_file_size = 0;
  uint64_t state_file_size = 0;
  uint32_t state_crc = 0;
  std::vector<FrozenDisk> disks;
  // The memory file's checksums (memory_checksums.h): a CRC-32C per chunk
  // of memory_chunk_size bytes. Empty in a format 1 snapshot, which has none.
  uint64_t memory_chunk_size = 0;
  std::vector<uint32_t> memory_crcs;
  bool operator==(const SnapshotHeader&) const = default;
};

// The whole header file.
std::vector<uint8_t> encode_header(const SnapshotHeader& header);
// Refuses a foreign file, a newer or retired format, a truncated or
// corrupted header, each with a message that says which.
Result<SnapshotHeader> decode_header(std::span<const uint8_t> file);

}  // namespace hostvisor::snapshot
