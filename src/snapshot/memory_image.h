// Guest RAM in a snapshot's memory file: each region at the offset it has in
// the RAM's own file (GuestMemory lays regions out one after another), and
// sparse: only pages holding a non-zero byte are written, every other page
// is a hole (SEEK_DATA/SEEK_HOLE find the data, and a mapped restore reads
// holes as zero without touching the disk).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "snapshot/memory_checksums.h"
#include "snapshot/snapshot_header.h"

namespace hostvisor::snapshot {

// The header's description of `memory`'s regions.
std::vector<MemoryRegionRecord> describe_regions(const GuestMemory& memory);
// The layout GuestMemory::create/map_private expect.
std::vector<MemoryRegionSpec> region_specs(const std::vector<MemoryRegionRecord>& regions);

struct MemoryImageStats {
  uint64_t file_size = 0;   // the file's length (all of RAM)
  uint64_t data_bytes = 0;  // bytes written (non-zero pages)
  uint64_t chunk_size = 0;  // of the checksums (memory_checksums.h)
  std::vector<uint32_t> chunk_crcs;
};

// A range of a file that holds data (not a hole), in file offsets.
struct FileExtent {
  uint64_t start, end;
};
// The data extents of `fd` within [start, end), page-aligned (all of it
// where the file system cannot tell).
Result<std::vector<FileExtent>> data_extents(int fd, uint64_t start, uint64_t end);

// Called after each write with the bytes written so far (tests inject a
// crash here).
using WriteProgress = std::function<void(uint64_t bytes_written)>;

// Writes `memory` into the empty file `fd`, and sums its chunks as it goes. On RAM backed by its own memfd
// only the pages the guest ever touched are read (SEEK_DATA on the memfd);
// on a privately mapped RAM (a mapped restore), the source file's data and
// the pages written since the restore (anonymous copies, from
// /proc/self/pagemap), so a re-save does not read the file's holes.
Result<MemoryImageStats> write_memory_image(int fd, const GuestMemory& memory, const WriteProgress& progress = {});

// Copies the data of the memory file `fd` into `memory` (a restore in copy
// mode): only the file's data extents are read, and given to `sums` (if
// any) as they are, so a copy restore checks the file for free.
Result<void> read_memory_image(int fd, GuestMemory& memory, MemoryChecksummer* sums = nullptr);

}  // namespace hostvisor::snapshot
