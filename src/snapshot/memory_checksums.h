// Checksums of a snapshot's memory file: a CRC-32C of each fixed-size chunk
// (2 MiB, or more for RAM so large that its chunks would not fit the header)
// of the file as it reads, holes as zeros. The header holds them (format 2
// on). The writer computes them from the pages it writes, in the same pass;
// a copy restore from the pages it reads; `hostvisor snapshot verify` and
// `run --restore --verify` read the file's data for them (its holes are
// never read: a run of zeros is folded into a CRC arithmetically).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace hostvisor::snapshot {

struct SnapshotHeader;

inline constexpr uint64_t kMemoryChunkSize = 2ull << 20;
inline constexpr uint64_t kMaxMemoryChunkSize = 1ull << 30;
// 512 KiB of checksums at most in the header (512 GiB of RAM in 4 MiB chunks).
inline constexpr uint64_t kMaxMemoryChunks = 1ull << 17;

// The chunk size a memory file of `file_size` bytes is checked in.
uint64_t memory_chunk_size_for(uint64_t file_size);
// How many chunks of `chunk_size` cover `file_size` bytes (the last may be short).
uint64_t memory_chunk_count(uint64_t file_size, uint64_t chunk_size);

// Computes the checksums of a file given as its non-zero parts, in order of
// offset; whatever is not given reads as zero.
class MemoryChecksummer {
 public:
  MemoryChecksummer(uint64_t file_size, uint64_t chunk_size);
  // The file's bytes at `offset`; `offset` is not before the end of what
  // was added last, and the bytes lie inside the file.
  void add(uint64_t offset, std::span<const uint8_t> bytes);
  // The checksums of every chunk (the rest of the file as zeros).
  std::vector<uint32_t> finish();

 private:
  void zeros_to(uint64_t offset);
  void close_chunk();

  uint64_t file_size_, chunk_size_;
  uint64_t at_ = 0;   // the file is summed up to here
  uint32_t crc_ = 0;  // of the current chunk, up to `at_`
  std::vector<uint32_t> crcs_;
};

// Compares checksums computed from a memory file (or from the RAM a copy
// restore read from it) with the header's; a mismatch names the first bad
// chunk, its bytes in the file and the guest-physical addresses it holds.
// A header without checksums (format 1) passes.
Result<void> check_memory_checksums(const SnapshotHeader& header, const std::vector<uint32_t>& computed);

// Reads the data of the memory file `fd` and checks it against the header.
Result<void> verify_memory_file(int fd, const SnapshotHeader& header);

}  // namespace hostvisor::snapshot
