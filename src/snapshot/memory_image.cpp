#include "snapshot/memory_image.h"

#include <fcntl.h>
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

using Extent = FileExtent;

}  // namespace

Result<std::vector<FileExtent>> data_extents(int fd, uint64_t start, uint64_t end) {
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

namespace {

// /proc/self/pagemap (Documentation/admin-guide/mm/pagemap.rst): one
// 64-bit entry per virtual page.
constexpr uint64_t kPagemapPresent = 1ull << 63, kPagemapSwapped = 1ull << 62, kPagemapFileOrShared = 1ull << 61;

// The pages of a privately mapped region (a mapped restore) that may hold
// data: the source file's data extents, where unwritten pages still read
// from, and the pages the guest wrote since, which became anonymous copies
// (present and not file-backed, or swapped out) that pagemap shows. Neither
// touches a page, so holes of the file are not read and RAM the guest never
// used costs nothing but its pagemap entries. Without a readable pagemap the
// whole region is returned (and scanned).
Result<std::vector<Extent>> private_region_extents(const GuestMemory& memory, const GuestMemory::Region& region) {
  const uint64_t start = region.file_offset, end = region.file_offset + region.size;
  UniqueFd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (pagemap.get() < 0) return std::vector<Extent>{{start, end}};
  const std::vector<Extent> file_extents = HV_TRY(data_extents(memory.memfd(), start, end));

  std::vector<Extent> extents;
  auto add_page = [&](uint64_t at) {
    if (!extents.empty() && extents.back().end == at) {
      extents.back().end = at + kPageSize;
    } else {
      extents.push_back({at, at + kPageSize});
    }
  };
  size_t next_file_extent = 0;
  constexpr size_t kChunk = 8192;  // entries read at once (64 KiB)
  std::vector<uint64_t> entries(kChunk);
  const uint64_t first_page = reinterpret_cast<uintptr_t>(region.host) / kPageSize;
  const uint64_t pages = region.size / kPageSize;
  for (uint64_t done = 0; done < pages;) {
    const size_t count = static_cast<size_t>(std::min<uint64_t>(kChunk, pages - done));
    const ssize_t n = ::pread(pagemap.get(), entries.data(), count * sizeof(uint64_t),
                              static_cast<off_t>((first_page + done) * sizeof(uint64_t)));
    if (n != static_cast<ssize_t>(count * sizeof(uint64_t))) return std::vector<Extent>{{start, end}};
    for (size_t i = 0; i < count; ++i) {
      const uint64_t at = start + (done + i) * kPageSize;
      while (next_file_extent < file_extents.size() && file_extents[next_file_extent].end <= at) ++next_file_extent;
      const bool in_file = next_file_extent < file_extents.size() && file_extents[next_file_extent].start <= at;
      const uint64_t e = entries[i];
      const bool written = ((e & kPagemapPresent) && !(e & kPagemapFileOrShared)) || (e & kPagemapSwapped);
      if (in_file || written) add_page(at);
    }
    done += count;
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

namespace {

// The regions in the order of their place in the file (checksums are
// computed in that order).
std::vector<const GuestMemory::Region*> regions_in_file_order(const GuestMemory& memory) {
  std::vector<const GuestMemory::Region*> regions;
  for (const auto& region : memory.regions()) regions.push_back(&region);
  std::sort(regions.begin(), regions.end(), [](auto* a, auto* b) { return a->file_offset < b->file_offset; });
  return regions;
}

}  // namespace

Result<MemoryImageStats> write_memory_image(int fd, const GuestMemory& memory, const WriteProgress& progress) {
  MemoryImageStats stats;
  for (const auto& region : memory.regions())
    stats.file_size = std::max(stats.file_size, region.file_offset + region.size);
  if (::ftruncate(fd, static_cast<off_t>(stats.file_size)) < 0) return Error::from_errno("sizing the memory file");
  stats.chunk_size = memory_chunk_size_for(stats.file_size);
  MemoryChecksummer sums(stats.file_size, stats.chunk_size);

  for (const GuestMemory::Region* region_pointer : regions_in_file_order(memory)) {
    const GuestMemory::Region& region = *region_pointer;
    std::vector<Extent> extents;
    if (memory.kind() == MemoryKind::kPrivateAnonymous) {
      // No file to ask: the process's page table says which pages were used.
      for (const auto& [from, to] : HV_TRY(memory.anonymous_pages_in_use(region)))
        extents.push_back({region.file_offset + from, region.file_offset + to});
    } else if (memory.memfd() < 0) {
      extents.push_back({region.file_offset, region.file_offset + region.size});
    } else if (memory.private_file()) {
      // Copy-on-write pages of a private mapping are not in its file.
      extents = HV_TRY(private_region_extents(memory, region));
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
          const uint8_t* data = region.host + (at - region.file_offset);
          // Summed while the pages are still in the cache from the zero test.
          sums.add(at, std::span(data, run_end - at));
          HV_TRY(pwrite_all(fd, data, run_end - at, at));
          stats.data_bytes += run_end - at;
          if (progress) progress(stats.data_bytes);
        }
        at = run_end;
      }
    }
  }
  stats.chunk_crcs = sums.finish();
  return stats;
}

Result<void> read_memory_image(int fd, GuestMemory& memory, MemoryChecksummer* sums) {
  for (const GuestMemory::Region* region_pointer : regions_in_file_order(memory)) {
    const GuestMemory::Region& region = *region_pointer;
    const auto extents = HV_TRY(data_extents(fd, region.file_offset, region.file_offset + region.size));
    for (const Extent& extent : extents) {
      uint8_t* data = region.host + (extent.start - region.file_offset);
      HV_TRY(pread_all(fd, data, extent.end - extent.start, extent.start));
      if (sums) sums->add(extent.start, std::span<const uint8_t>(data, extent.end - extent.start));
    }
  }
  return {};
}

}  // namespace hostvisor::snapshot
