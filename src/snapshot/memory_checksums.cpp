#include "snapshot/memory_checksums.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "snapshot/crc32c.h"
#include "snapshot/memory_image.h"
#include "snapshot/snapshot_header.h"

namespace hostvisor::snapshot {

uint64_t memory_chunk_size_for(uint64_t file_size) {
  uint64_t chunk = kMemoryChunkSize;
  while (chunk < kMaxMemoryChunkSize && memory_chunk_count(file_size, chunk) > kMaxMemoryChunks) chunk *= 2;
  return chunk;
}

uint64_t memory_chunk_count(uint64_t file_size, uint64_t chunk_size) {
  return file_size / chunk_size + (file_size % chunk_size != 0 ? 1 : 0);
}

MemoryChecksummer::MemoryChecksummer(uint64_t file_size, uint64_t chunk_size)
    : file_size_(file_size), chunk_size_(chunk_size) {
  crcs_.reserve(memory_chunk_count(file_size, chunk_size));
}

void MemoryChecksummer::close_chunk() {
  crcs_.push_back(crc_);
  crc_ = 0;
}

void MemoryChecksummer::zeros_to(uint64_t offset) {
  while (at_ < offset) {
    const uint64_t chunk_end = std::min(file_size_, (at_ / chunk_size_ + 1) * chunk_size_);
    const uint64_t to = std::min(offset, chunk_end);
    crc_ = crc32c_zeros(crc_, to - at_);
    at_ = to;
    if (at_ == chunk_end) close_chunk();
  }
}

void MemoryChecksummer::add(uint64_t offset, std::span<const uint8_t> bytes) {
  zeros_to(offset);
  while (!bytes.empty()) {
    const uint64_t chunk_end = std::min(file_size_, (at_ / chunk_size_ + 1) * chunk_size_);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), chunk_end - at_));
    crc_ = crc32c(bytes.first(n), crc_);
    at_ += n;
    bytes = bytes.subspan(n);
    if (at_ == chunk_end) close_chunk();
  }
}

std::vector<uint32_t> MemoryChecksummer::finish() {
  zeros_to(file_size_);
  return std::move(crcs_);
}

namespace {

// "guest-physical 0x0-0xfffff and 0x100000000-0x1000fffff", or "no guest RAM".
std::string guest_ranges_of(const SnapshotHeader& header, uint64_t start, uint64_t end) {
  std::string ranges;
  for (const MemoryRegionRecord& region : header.regions) {
    const uint64_t from = std::max(start, region.file_offset), to = std::min(end, region.file_offset + region.size);
    if (from >= to) continue;
    char text[64];
    std::snprintf(text, sizeof text, "0x%" PRIx64 "-0x%" PRIx64, region.guest_address + (from - region.file_offset),
                  region.guest_address + (to - region.file_offset) - 1);
    ranges += (ranges.empty() ? "guest-physical " : " and ") + std::string(text);
  }
  return ranges.empty() ? "no guest RAM" : ranges;
}

}  // namespace

Result<void> check_memory_checksums(const SnapshotHeader& header, const std::vector<uint32_t>& computed) {
  if (header.memory_crcs.empty()) return {};
  if (computed.size() != header.memory_crcs.size())
    return Error(ErrorCode::kCorrupt, "the memory file: " + std::to_string(computed.size()) +
                                          " chunks summed, the header has " +
                                          std::to_string(header.memory_crcs.size()) + " checksums");
  size_t bad = 0, first = 0;
  for (size_t i = computed.size(); i-- > 0;)
    if (computed[i] != header.memory_crcs[i]) {
      ++bad;
      first = i;
    }
  if (bad == 0) return {};
  const uint64_t start = first * header.memory_chunk_size;
  const uint64_t end = std::min(header.memory_file_size, start + header.memory_chunk_size);
  return Error(ErrorCode::kCorrupt,
               "the memory file's chunk " + std::to_string(first) + " (file bytes " + std::to_string(start) + "-" +
                   std::to_string(end - 1) + ", " + guest_ranges_of(header, start, end) +
                   ") does not match its checksum" +
                   (bad > 1 ? " (and " + std::to_string(bad - 1) + " more chunks)" : std::string()) +
                   "; the file was changed or damaged");
}

Result<void> verify_memory_file(int fd, const SnapshotHeader& header) {
  if (header.memory_crcs.empty()) return {};
  struct stat st;
  if (::fstat(fd, &st) < 0) return Error::from_errno("stat of the snapshot's memory file");
  if (static_cast<uint64_t>(st.st_size) != header.memory_file_size)
    return Error(ErrorCode::kCorrupt,
                 "the memory file holds " + std::to_string(st.st_size) + " bytes, the header says " +
                     std::to_string(header.memory_file_size) +
                     (static_cast<uint64_t>(st.st_size) < header.memory_file_size ? " (truncated)" : ""));
  MemoryChecksummer sums(header.memory_file_size, header.memory_chunk_size);
  std::vector<uint8_t> buffer(4u << 20);
  for (const FileExtent& extent : HV_TRY(data_extents(fd, 0, header.memory_file_size))) {
    for (uint64_t at = extent.start; at < extent.end;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), extent.end - at));
      const ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(at));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error::from_errno("reading the snapshot's memory file");
      }
      if (n == 0)
        return Error(ErrorCode::kCorrupt, "the memory file ends at byte " + std::to_string(at) + ", the header says " +
                                              std::to_string(header.memory_file_size));
      sums.add(at, std::span(buffer.data(), static_cast<size_t>(n)));
      at += static_cast<uint64_t>(n);
    }
  }
  return check_memory_checksums(header, sums.finish());
}

}  // namespace hostvisor::snapshot
