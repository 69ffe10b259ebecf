#include "snapshot/memory_image.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "snapshot/snapshot_format.h"

namespace hostvisor::snapshot {

namespace {

bool zero_page(const uint8_t* page) {
  const auto* words = reinterpret_cast<const uint64_t*>(page);
  for (size_t i = 0; i < kPageSize / sizeof(uint64_t); ++i)
    if (words[i] != 0) return false;
  return true;
}

Result<void> pwrite_all(int fd, const uint8_t* data, uint64_t length, uint64_t offset) {
  while (length > 0) {
    const ssize_t n = ::pwrite(fd, data, std::min<uint64_t>(length, 1u << 30), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("writing the memory file");
    }
    data += n;
    length -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

Result<void> pread_all(int fd, uint8_t* data, uint64_t length, uint64_t offset) {
  while (length > 0) {
    const ssize_t n = ::pread(fd, data, std::min<uint64_t>(length, 1u << 30), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("reading the memory file");
    }
    if (n == 0) return Error(ErrorCode::kCorrupt, "the memory file ends early");
    data += n;
    length -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return {};
}

struct Extent {
  uint64_t start, end;  // file offsets
};

// The data extents of `fd` within [start, end), page-aligned.
Result<std::vector<Extent>> data_extents(int fd, uint64_t start, uint64_t end) {
  std::vector<Extent> extents;
  uint64_t at = start;
  while (at < end) {
    const off_t data = ::lseek(fd, static_cast<off_t>(at), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after `at`
      if (errno == EINVAL) {      // no SEEK_DATA here: all of it may be data
        extents.push_back({at, end});
        break;
      }
      return Error::from_errno("finding the data of guest RAM");
    }
    if (static_cast<uint64_t>(data) >= end) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return Error::from_errno("finding the holes of guest RAM");
    const uint64_t from = static_cast<uint64_t>(data) / kPageSize * kPageSize;
    const uint64_t to = std::min<uint64_t>((static_cast<uint64_t>(hole) + kPageSize - 1) / kPageSize * kPageSize, end);
    extents.push_back({std::max(from, at), to});
    at = to;
  }
  return extents;
}

}  // namespace

std::vector<MemoryRegionRecord> describe_regions(const GuestMemory& memory) {
  std::vector<MemoryRegionRecord> regions;
  for (const auto& region : memory.regions())
    regions.push_back({region.start.value(), region.size, region.file_offset});
  return regions;
}

std::vector<MemoryRegionSpec> region_specs(const std::vector<MemoryRegionRecord>& regions) {
  std::vector<MemoryRegionSpec> specs;
  for (const auto& region : regions) specs.push_back({GuestAddress(region.guest_address), region.size});
  return specs;
}

Result<MemoryImageStats> write_memory_image(int fd, const GuestMemory& memory, const WriteProgress& progress) {
  MemoryImageStats stats;
  for (const auto& region : memory.regions())
    stats.file_size = std::max(stats.file_size, region.file_offset + region.size);
  if (::ftruncate(fd, static_cast<off_t>(stats.file_size)) < 0) return Error::from_errno("sizing the memory file");

  for (const auto& region : memory.regions()) {
    std::vector<Extent> extents;
    if (memory.kind() == MemoryKind::kPrivateAnonymous) {
      // No file to ask: the process's page table says which pages were used.
      for (const auto& [from, to] : HV_TRY(memory.anonymous_pages_in_use(region)))
        extents.push_back({region.file_offset + from, region.file_offset + to});
    } else if (memory.private_file() || memory.memfd() < 0) {
      // Copy-on-write pages of a private mapping are not in its file.
      extents.push_back({region.file_offset, region.file_offset + region.size});
    } else {
      extents = HV_TRY(data_extents(memory.memfd(), region.file_offset, region.file_offset + region.size));
    }
    for (const Extent& extent : extents) {
      uint64_t at = extent.start;
      while (at < extent.end) {
        // A run of non-zero pages, written with one pwrite.
        while (at < extent.end && zero_page(region.host + (at - region.file_offset))) at += kPageSize;
        uint64_t run_end = at;
        while (run_end < extent.end && !zero_page(region.host + (run_end - region.file_offset))) run_end += kPageSize;
        if (run_end > at) {
          HV_TRY(pwrite_all(fd, region.host + (at - region.file_offset), run_end - at, at));
          stats.data_bytes += run_end - at;
          if (progress) progress(stats.data_bytes);
        }
        at = run_end;
      }
    }
  }
  return stats;
}

Result<void> read_memory_image(int fd, GuestMemory& memory) {
  for (const auto& region : memory.regions()) {
    const auto extents = HV_TRY(data_extents(fd, region.file_offset, region.file_offset + region.size));
    for (const Extent& extent : extents)
      HV_TRY(pread_all(fd, region.host + (extent.start - region.file_offset), extent.end - extent.start, extent.start));
  }
  return {};
}

}  // namespace hostvisor::snapshot
