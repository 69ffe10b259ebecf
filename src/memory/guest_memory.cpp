#include "memory/guest_memory.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/size.h"

namespace hostvisor {

namespace {

constexpr uint64_t kPageSize = 4096;

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24  // Linux 5.18
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

Result<uint64_t> check_specs(std::vector<MemoryRegionSpec>& sorted, uint64_t page_size) {
  if (sorted.empty()) return Error(ErrorCode::kInvalidArgument, "guest memory needs at least one region");
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.start < b.start; });
  uint64_t total = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& s = sorted[i];
    if (s.size == 0 || s.size % kPageSize != 0 || s.start.value() % kPageSize != 0)
      return Error(ErrorCode::kInvalidArgument, "guest memory regions must be non-empty and page-aligned");
    if (s.start.value() + s.size < s.start.value())
      return Error(ErrorCode::kInvalidArgument, "guest memory region wraps the address space");
    if (i > 0 && sorted[i - 1].start.value() + sorted[i - 1].size > s.start.value())
      return Error(ErrorCode::kInvalidArgument, "guest memory regions overlap");
    if (s.size % page_size != 0 || s.start.value() % page_size != 0)
      return Error(ErrorCode::kInvalidArgument,
                   "hugepages=on: guest RAM must be a multiple of " + format_size(page_size) + " (whole huge pages)");
    if (total + s.size < total) return Error(ErrorCode::kInvalidArgument, "guest memory too large");
    total += s.size;
  }
  return total;
}

Error out_of_range(GuestAddress address, uint64_t length) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "guest access [%#llx, +%#llx) is outside guest RAM",
                static_cast<unsigned long long>(address.value()), static_cast<unsigned long long>(length));
  return Error(ErrorCode::kOutOfRange, buf);
}

// Maps `size` bytes at a 2 MiB-aligned address, so transparent huge pages can
// back all of a region (the kernel only aligns shmem and hugetlbfs itself).
void* map_aligned(uint64_t size, int prot, int flags, int fd, uint64_t offset) {
  const uint64_t align = kHugetlbPageSize;
  void* area = ::mmap(nullptr, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED) return MAP_FAILED;
  const auto base = reinterpret_cast<uintptr_t>(area);
  const uintptr_t aligned = (base + align - 1) & ~(align - 1);
  void* p = ::mmap(reinterpret_cast<void*>(aligned), size, prot, flags | MAP_FIXED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    const int err = errno;
    ::munmap(area, size + align);
    errno = err;
    return MAP_FAILED;
  }
  if (aligned > base) ::munmap(area, aligned - base);
  const uintptr_t tail = aligned + size, area_end = base + size + align;
  if (area_end > tail) ::munmap(reinterpret_cast<void*>(tail), area_end - tail);
  return p;
}

// The kernel reserves a hugetlbfs mapping's pages at mmap: a pool too small
// fails at start rather than with a SIGBUS in the guest.
Error hugetlb_pool_too_small(uint64_t bytes) {
  const HostMemorySettings host = HostMemorySettings::read();
  const uint64_t free = host.hugetlb_free.value_or(0);
  const uint64_t unreserved = free - std::min(free, host.hugetlb_reserved.value_or(0));
  return Error(ErrorCode::kUnsupported, "hugepages=on: guest RAM needs " + std::to_string(bytes / kHugetlbPageSize) +
                                            " 2 MiB huge pages, the host's pool has " + std::to_string(unreserved) +
                                            " free (raise /proc/sys/vm/nr_hugepages)");
}

// Only THP and KSM depend on host settings; the rest fail or work here.
std::vector<std::string> warnings_for(const MemoryBackingOptions& options, MemoryKind kind) {
  if (options.huge_pages != HugePages::kTransparent && !options.merge) return {};
  return host_setting_warnings(options, kind, HostMemorySettings::read());
}

bool hugetlb_pool_holds(uint64_t bytes) {
  const HostMemorySettings host = HostMemorySettings::read();
  if (!host.hugetlb_free) return true;  // no figures: let the reservation decide
  const uint64_t free = *host.hugetlb_free - std::min(*host.hugetlb_free, host.hugetlb_reserved.value_or(0));
  return free >= bytes / kHugetlbPageSize;
}

}  // namespace

Result<void> GuestMemory::map_regions(const std::vector<MemoryRegionSpec>& sorted, int flags) {
  uint64_t offset = 0, total = 0;
  for (const auto& s : sorted) total += s.size;
  for (const auto& s : sorted) {
    const int fd = memfd_.get();
    void* p = map_aligned(s.size, PROT_READ | PROT_WRITE, flags, fd, fd < 0 ? 0 : offset);
    if (p == MAP_FAILED) {
      const int err = errno;
      if (kind_ == MemoryKind::kHugetlbMemfd && err == ENOMEM) return hugetlb_pool_too_small(total);
      return Error::from_errno("mapping guest RAM", err);
    }
    regions_.push_back(Region{s.start, s.size, static_cast<uint8_t*>(p), offset});
    // A child the VMM forks (helpers it starts) must not share private RAM
    // copy-on-write: every guest write until its exec would copy a page.
    ::madvise(p, s.size, MADV_DONTFORK);
    offset += s.size;
  }
  return {};
}

Result<void> GuestMemory::apply_options(uint64_t total) {
  for (const Region& r : regions_) {
    if (options_.huge_pages == HugePages::kTransparent && ::madvise(r.host, r.size, MADV_HUGEPAGE) < 0)
      return Error::from_errno("hugepages=thp: MADV_HUGEPAGE on guest RAM");
    if (options_.merge && ::madvise(r.host, r.size, MADV_MERGEABLE) < 0)
      return Error::from_errno("merge=on: this kernel has no KSM (MADV_MERGEABLE)");
  }
  if (options_.lock) {
    // mlock faults every page in and pins it.
    for (const Region& r : regions_) {
      if (::mlock(r.host, r.size) == 0) continue;
      const int err = errno;
      rlimit limit{};
      ::getrlimit(RLIMIT_MEMLOCK, &limit);
      if ((err == ENOMEM || err == EPERM) && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < total)
        return Error(ErrorCode::kUnsupported, "lock=on: RLIMIT_MEMLOCK is " + format_size(limit.rlim_cur) +
                                                  ", below the " + format_size(total) +
                                                  " of guest RAM (raise it with `ulimit -l`, or run with "
                                                  "CAP_IPC_LOCK)");
      return Error::from_errno("lock=on: mlock of guest RAM", err);
    }
  } else if (options_.prealloc) {
    for (const Region& r : regions_)
      if (::madvise(r.host, r.size, MADV_POPULATE_WRITE) < 0)
        return Error::from_errno("prealloc=on: populating " + format_size(total) + " of guest RAM");
  }
  return {};
}

Result<GuestMemory> GuestMemory::create(const std::vector<MemoryRegionSpec>& specs,
                                        const MemoryBackingOptions& options) {
  GuestMemory memory;
  memory.kind_ = HV_TRY(choose_memory_kind(options));
  memory.options_ = options;
  if (memory.kind_ == MemoryKind::kHugetlbMemfd) memory.page_size_ = kHugetlbPageSize;
  std::vector<MemoryRegionSpec> sorted = specs;
  const uint64_t total = HV_TRY(check_specs(sorted, memory.page_size_));

  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (memory.kind_ != MemoryKind::kPrivateAnonymous) {
    const bool hugetlb = memory.kind_ == MemoryKind::kHugetlbMemfd;
    if (hugetlb && !hugetlb_pool_holds(total)) return hugetlb_pool_too_small(total);
    const int fd = ::memfd_create("hostvisor-ram", MFD_CLOEXEC | (hugetlb ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
    if (fd < 0)
      return Error::from_errno(hugetlb ? "hugepages=on: memfd_create(MFD_HUGETLB) (does the host have hugetlbfs?)"
                                       : "memfd_create for guest RAM");
    memory.memfd_.reset(fd);
    if (::ftruncate(fd, static_cast<off_t>(total)) < 0)
      return Error::from_errno("sizing guest RAM to " + std::to_string(total) + " bytes");
    // MAP_NORESERVE: RAM is committed as the guest touches it, like a real
    // hypervisor; a large --memory must not fail up front. Not for hugetlbfs,
    // whose reservation is what makes a short pool an error now.
    flags = hugetlb ? MAP_SHARED : MAP_SHARED | MAP_NORESERVE;
  }
  HV_TRY(memory.map_regions(sorted, flags));
  HV_TRY(memory.apply_options(total));
  memory.host_warnings_ = warnings_for(options, memory.kind_);
  return memory;
}

Result<GuestMemory> GuestMemory::map_private(const std::vector<MemoryRegionSpec>& specs, UniqueFd file,
                                             const MemoryBackingOptions& options) {
  if (auto conflict = mapped_restore_conflict(options))
    return Error(ErrorCode::kInvalidArgument, "RAM mapped from a file: " + *conflict);
  std::vector<MemoryRegionSpec> sorted = specs;
  const uint64_t total = HV_TRY(check_specs(sorted, kPageSize));
  struct stat st;
  if (::fstat(file.get(), &st) < 0) return Error::from_errno("stat of the guest RAM file");
  if (static_cast<uint64_t>(st.st_size) < total)
    return Error(ErrorCode::kCorrupt, "the guest RAM file holds " + std::to_string(st.st_size) + " bytes, " +
                                          std::to_string(total) + " needed");
  GuestMemory memory;
  memory.memfd_ = std::move(file);
  memory.kind_ = MemoryKind::kPrivateFile;
  memory.options_ = options;
  HV_TRY(memory.map_regions(sorted, MAP_PRIVATE | MAP_NORESERVE));
  HV_TRY(memory.apply_options(total));
  memory.host_warnings_ = warnings_for(options, memory.kind_);
  return memory;
}

Result<void> GuestMemory::discard(GuestAddress start, uint64_t length) {
  const uint64_t granule = discard_granularity();
  if (start.value() % granule != 0 || length % granule != 0) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "discarding guest RAM [%#llx, +%#llx): not aligned to %llu KiB",
                  static_cast<unsigned long long>(start.value()), static_cast<unsigned long long>(length),
                  static_cast<unsigned long long>(granule >> 10));
    return Error(ErrorCode::kInvalidArgument, buf);
  }
  const Region* region = find(start, length);
  if (!region) return out_of_range(start, length);
  if (length == 0) return {};
  const uint64_t offset = start.value() - region->start.value();
  uint8_t* host = region->host + offset;
  switch (kind_) {
    case MemoryKind::kPrivateAnonymous:
      // Locked RAM stays locked: the pages fault back in, pinned, on use.
      if (::madvise(host, length, options_.lock ? MADV_DONTNEED_LOCKED : MADV_DONTNEED) < 0)
        return Error::from_errno("giving guest RAM back to the host");
      break;
    case MemoryKind::kSharedMemfd:
    case MemoryKind::kHugetlbMemfd:
      // Punching the hole frees the memfd's pages and unmaps them everywhere,
      // so every mapping (and KVM's, through its MMU notifier) reads zeros.
      if (::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(region->file_offset + offset), static_cast<off_t>(length)) < 0)
        return Error::from_errno("punching a hole in guest RAM");
      break;
    case MemoryKind::kPrivateFile: HV_TRY(map_anonymous_over(host, length)); break;
  }
  note_dma_write(start, length);
  return {};
}

// Replaces part of a private file mapping with fresh zero pages at the same
// address, so host pointers into RAM (the software CPU's TLB, KVM's memslot)
// stay valid. Each call may split the mapping, so a guest discarding scattered
// pages can exhaust vm.max_map_count: that fails here with an error.
Result<void> GuestMemory::map_anonymous_over(uint8_t* host, uint64_t length) {
  void* p =
      ::mmap(host, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return Error::from_errno("mapping zero pages over discarded guest RAM");
  ::madvise(host, length, MADV_DONTFORK);  // as map_regions() gave the mapping it replaces
  if (options_.merge && ::madvise(host, length, MADV_MERGEABLE) < 0)
    return Error::from_errno("merge=on: MADV_MERGEABLE on discarded guest RAM");
  return {};
}

Result<std::vector<GuestMemory::Range>> GuestMemory::anonymous_pages_in_use(const Region& region) const {
  if (kind_ != MemoryKind::kPrivateAnonymous)
    return Error(ErrorCode::kInternal, "pagemap ranges are only for private anonymous guest RAM");
  UniqueFd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!pagemap.valid()) return Error::from_errno("opening /proc/self/pagemap");
  constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62;
  std::vector<Range> ranges;
  std::vector<uint64_t> entries(4096);  // 16 MiB of RAM per read
  const uint64_t pages = region.size / kPageSize;
  const uint64_t first_page = reinterpret_cast<uintptr_t>(region.host) / kPageSize;
  for (uint64_t done = 0; done < pages;) {
    const uint64_t count = std::min<uint64_t>(entries.size(), pages - done);
    const ssize_t n = ::pread(pagemap.get(), entries.data(), count * sizeof(uint64_t),
                              static_cast<off_t>((first_page + done) * sizeof(uint64_t)));
    if (n != static_cast<ssize_t>(count * sizeof(uint64_t))) return Error::from_errno("reading /proc/self/pagemap");
    for (uint64_t i = 0; i < count; ++i) {
      if (!(entries[i] & (kPresent | kSwapped))) continue;
      const uint64_t at = (done + i) * kPageSize;
      if (!ranges.empty() && ranges.back().second == at)
        ranges.back().second += kPageSize;
      else
        ranges.push_back({at, at + kPageSize});
    }
    done += count;
  }
  return ranges;
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : memfd_(std::move(other.memfd_)),
      regions_(std::move(other.regions_)),
      dma_observer_(std::move(other.dma_observer_)),
      kind_(other.kind_),
      options_(other.options_),
      host_warnings_(std::move(other.host_warnings_)),
      page_size_(other.page_size_),
      device_areas_(std::move(other.device_areas_)) {
  other.regions_.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this != &other) {
    unmap_all();
    memfd_ = std::move(other.memfd_);
    regions_ = std::move(other.regions_);
    dma_observer_ = std::move(other.dma_observer_);
    kind_ = other.kind_;
    options_ = other.options_;
    host_warnings_ = std::move(other.host_warnings_);
    page_size_ = other.page_size_;
    device_areas_ = std::move(other.device_areas_);
    other.regions_.clear();
  }
  return *this;
}

GuestMemory::~GuestMemory() { unmap_all(); }

void GuestMemory::unmap_all() {
  for (auto& r : regions_) ::munmap(r.host, r.size);
  regions_.clear();
}

uint64_t GuestMemory::total_size() const {
  uint64_t total = 0;
  for (const auto& r : regions_) total += r.size;
  return total;
}

const GuestMemory::Region* GuestMemory::find(GuestAddress address, uint64_t length) const {
  const uint64_t a = address.value();
  for (const auto& r : regions_) {
    const uint64_t start = r.start.value();
    // Overflow-safe: compare offsets within the region, never a + length.
    if (a >= start && a - start <= r.size && length <= r.size - (a - start)) {
      if (length == 0 && a - start == r.size) continue;  // one past the end
      return &r;
    }
  }
  return nullptr;
}

bool GuestMemory::contains(GuestAddress address, uint64_t length) const { return find(address, length) != nullptr; }

uint8_t* GuestMemory::host_pointer(GuestAddress address, uint64_t length) const {
  const Region* r = find(address, length);
  return r ? r->host + (address.value() - r->start.value()) : nullptr;
}

Result<void> GuestMemory::read(GuestAddress address, std::span<uint8_t> out) const {
  uint8_t* p = host_pointer(address, out.size());
  if (!p) return out_of_range(address, out.size());
  std::memcpy(out.data(), p, out.size());
  return {};
}

Result<void> GuestMemory::write(GuestAddress address, std::span<const uint8_t> data) {
  uint8_t* p = host_pointer(address, data.size());
  if (!p) return out_of_range(address, data.size());
  std::memcpy(p, data.data(), data.size());
  return {};
}

Result<void> GuestMemory::fill(GuestAddress address, uint8_t value, uint64_t length) {
  uint8_t* p = host_pointer(address, length);
  if (!p) return out_of_range(address, length);
  std::memset(p, value, length);
  return {};
}

Result<std::span<uint8_t>> GuestMemory::slice(GuestAddress address, uint64_t length) const {
  uint8_t* p = host_pointer(address, length);
  if (!p) return out_of_range(address, length);
  return std::span<uint8_t>(p, length);
}

}  // namespace hostvisor
