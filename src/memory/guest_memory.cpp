#include "memory/guest_memory.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace hostvisor {

namespace {
constexpr uint64_t kPageSize = 4096;
}

static Error out_of_range(GuestAddress address, uint64_t length);

namespace {
Result<uint64_t> check_specs(std::vector<MemoryRegionSpec>& sorted) {
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
    if (total + s.size < total) return Error(ErrorCode::kInvalidArgument, "guest memory too large");
    total += s.size;
  }
  return total;
}
}  // namespace

Result<void> GuestMemory::map_regions(const std::vector<MemoryRegionSpec>& sorted, int flags) {
  uint64_t offset = 0;
  for (const auto& s : sorted) {
    // MAP_NORESERVE: RAM is committed as the guest touches it, like a real
    // hypervisor; a large --memory must not fail up front.
    void* p = ::mmap(nullptr, s.size, PROT_READ | PROT_WRITE, flags | MAP_NORESERVE, memfd_.get(),
                     static_cast<off_t>(offset));
    if (p == MAP_FAILED) return Error::from_errno("mapping guest RAM");
    regions_.push_back(Region{s.start, s.size, static_cast<uint8_t*>(p), offset});
    offset += s.size;
  }
  return {};
}

Result<GuestMemory> GuestMemory::create(const std::vector<MemoryRegionSpec>& specs) {
  std::vector<MemoryRegionSpec> sorted = specs;
  const uint64_t total = HV_TRY(check_specs(sorted));

  int fd = ::memfd_create("hostvisor-ram", MFD_CLOEXEC);
  if (fd < 0) return Error::from_errno("memfd_create for guest RAM");
  GuestMemory memory;
  memory.memfd_.reset(fd);
  if (::ftruncate(fd, static_cast<off_t>(total)) < 0)
    return Error::from_errno("sizing guest RAM to " + std::to_string(total) + " bytes");
  HV_TRY(memory.map_regions(sorted, MAP_SHARED));
  return memory;
}

Result<GuestMemory> GuestMemory::map_private(const std::vector<MemoryRegionSpec>& specs, UniqueFd file) {
  std::vector<MemoryRegionSpec> sorted = specs;
  const uint64_t total = HV_TRY(check_specs(sorted));
  struct stat st;
  if (::fstat(file.get(), &st) < 0) return Error::from_errno("stat of the guest RAM file");
  if (static_cast<uint64_t>(st.st_size) < total)
    return Error(ErrorCode::kCorrupt, "the guest RAM file holds " + std::to_string(st.st_size) + " bytes, " +
                                          std::to_string(total) + " needed");
  GuestMemory memory;
  memory.memfd_ = std::move(file);
  memory.private_file_ = true;
  HV_TRY(memory.map_regions(sorted, MAP_PRIVATE));
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
  if (private_file_) {
    HV_TRY(map_anonymous_over(host, length));
  } else {
    // Punching the hole frees the memfd's pages and unmaps them everywhere,
    // so every mapping (and KVM's through its MMU notifier) reads zeros.
    if (::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(region->file_offset + offset), static_cast<off_t>(length)) < 0)
      return Error::from_errno("punching a hole in guest RAM");
  }
  note_dma_write(start, length);
  return {};
}

// Replaces part of a private file mapping with fresh zero pages at the same
// address, so host pointers into RAM (the software CPU's TLB, KVM's memslot)
// stay valid. Each call may split the mapping, so a guest discarding scattered
// pages can exhaust vm.max_map_count: that fails here with an error.
Result<void> GuestMemory::map_anonymous_over(uint8_t* host, uint64_t length) {
  void* p = ::mmap(host, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return Error::from_errno("mapping zero pages over discarded guest RAM");
  return {};
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : memfd_(std::move(other.memfd_)),
      regions_(std::move(other.regions_)),
      dma_observer_(std::move(other.dma_observer_)),
      private_file_(other.private_file_),
      page_size_(other.page_size_) {
  other.regions_.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this != &other) {
    unmap_all();
    memfd_ = std::move(other.memfd_);
    regions_ = std::move(other.regions_);
    dma_observer_ = std::move(other.dma_observer_);
    private_file_ = other.private_file_;
    page_size_ = other.page_size_;
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

static Error out_of_range(GuestAddress address, uint64_t length) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "guest access [%#llx, +%#llx) is outside guest RAM",
                static_cast<unsigned long long>(address.value()), static_cast<unsigned long long>(length));
  return Error(ErrorCode::kOutOfRange, buf);
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
