// Guest RAM: every region mapped once into the host, backed as
// memory_backing.h chooses (private anonymous memory, or one memfd holding
// every region in address order). All guest-memory access goes through these
// accessors, which check bounds with overflow-safe arithmetic; an access that
// is not wholly inside one region fails (it never wraps, never touches host
// memory outside RAM).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "memory/device_memory_areas.h"
#include "memory/guest_address.h"
#include "memory/memory_backing.h"

namespace hostvisor {

struct MemoryRegionSpec {
  GuestAddress start;
  uint64_t size;
};

class GuestMemory {
 public:
  struct Region {
    GuestAddress start;
    uint64_t size;
    uint8_t* host;         // mapping of this region
    uint64_t file_offset;  // offset of this region in the memfd (or the layout a memfd would have)
    GuestAddress end() const { return start + size; }
  };

  // Regions must be page-aligned (2 MiB with hugepages=on), non-empty and
  // must not overlap. A memfd holds them in address order, one after
  // another. Each option takes effect here or this fails with a one-line
  // error (a huge page pool or RLIMIT_MEMLOCK too small); what the host's
  // settings stop from working is in host_warnings().
  static Result<GuestMemory> create(const std::vector<MemoryRegionSpec>& specs,
                                    const MemoryBackingOptions& options = {});
  // Guest RAM mapped MAP_PRIVATE from `file`, laid out as create() lays out
  // its memfd (a snapshot's memory file): pages load lazily on first touch
  // and guest writes are copy-on-write, so the file is never written and
  // nothing here scales with the RAM's size. The file must stay unchanged
  // while the memory lives.
  // Of the options only merge=on applies (mapped_restore_conflict() names
  // why the others cannot); any other is an error.
  static Result<GuestMemory> map_private(const std::vector<MemoryRegionSpec>& specs, UniqueFd file,
                                         const MemoryBackingOptions& options = {});

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) noexcept;
  GuestMemory& operator=(GuestMemory&&) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  const std::vector<Region>& regions() const { return regions_; }
  uint64_t total_size() const;
  // The file behind RAM: the memfd of create() (-1 for private anonymous
  // RAM), or map_private()'s file.
  int memfd() const { return memfd_.get(); }
  // True for map_private(): the file does not hold the guest's writes.
  bool private_file() const { return kind_ == MemoryKind::kPrivateFile; }
  MemoryKind kind() const { return kind_; }
  const MemoryBackingOptions& options() const { return options_; }
  // Options the host's settings keep from taking effect, one line each.
  const std::vector<std::string>& host_warnings() const { return host_warnings_; }

  // Gives the host back the pages of [start, start + length): afterwards the
  // guest reads zeros there and the host's memory really drops (the balloon
  // and free page reporting). Private anonymous RAM is dropped with
  // MADV_DONTNEED, a memfd gets a hole punched (DONTNEED alone frees nothing
  // in shared memory), and RAM mapped privately from a snapshot file gets
  // fresh anonymous pages mapped over the range (DONTNEED there would bring
  // back the file's old contents). The range must lie inside one region and
  // be aligned to discard_granularity(); anything else is an error, never a
  // crash. The guest must not be using the range (the balloon's contract);
  // the software CPU is told to forget code decoded from it.
  Result<void> discard(GuestAddress start, uint64_t length);
  // The unit discard() works in: 4 KiB, or 2 MiB for hugetlb-backed RAM.
  uint64_t discard_granularity() const { return page_size_; }
  // The parts of this RAM that devices are using (virtqueue rings), which
  // whoever calls discard() for the guest must leave alone. Shared, so that
  // a device may withdraw its areas also when it outlives the memory.
  DeviceMemoryAreas& device_areas() const { return *device_areas_; }
  const std::shared_ptr<DeviceMemoryAreas>& shared_device_areas() const { return device_areas_; }

  // For private anonymous RAM: the byte ranges of `region` (offsets within
  // it, page-aligned, in order) that the guest may have written, from
  // /proc/self/pagemap (pages mapped or swapped out); pages outside them
  // were never touched or were discarded and read as zeros. The snapshot
  // writer uses it as it uses SEEK_DATA on a memfd.
  using Range = std::pair<uint64_t, uint64_t>;  // [first, second)
  Result<std::vector<Range>> anonymous_pages_in_use(const Region& region) const;

  // True when [address, address + length) lies wholly inside one region.
  bool contains(GuestAddress address, uint64_t length) const;

  Result<void> read(GuestAddress address, std::span<uint8_t> out) const;
  Result<void> write(GuestAddress address, std::span<const uint8_t> data);
  Result<void> fill(GuestAddress address, uint8_t value, uint64_t length);

  template <typename T>
  Result<T> read_obj(GuestAddress address) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    HV_TRY(read(address, std::span(reinterpret_cast<uint8_t*>(&value), sizeof(T))));
    return value;
  }
  template <typename T>
  Result<void> write_obj(GuestAddress address, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(address, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }

  // A view of guest memory for a bulk copy done right away (loaders, device
  // DMA). Do not keep it: the contract is no long-lived pointers into RAM.
  Result<std::span<uint8_t>> slice(GuestAddress address, uint64_t length) const;

  // Host pointer for [address, address + length) or nullptr if not inside one
  // region. For the software CPU's TLB, which revalidates on every miss.
  uint8_t* host_pointer(GuestAddress address, uint64_t length) const;

  // Device DMA writes RAM behind the vCPUs' backs (through slices, host
  // pointers or io_uring). Devices report each range they wrote when they
  // hand the buffer back to the driver; the machine routes the report to the
  // backend, whose software CPU must forget code decoded from those pages.
  using DmaWriteObserver = std::function<void(GuestAddress address, uint64_t length)>;
  void set_dma_write_observer(DmaWriteObserver observer) { dma_observer_ = std::move(observer); }
  void note_dma_write(GuestAddress address, uint64_t length) const {
    if (dma_observer_ && length > 0) dma_observer_(address, length);
  }

 private:
  const Region* find(GuestAddress address, uint64_t length) const;
  Result<void> map_regions(const std::vector<MemoryRegionSpec>& sorted, int flags);
  Result<void> apply_options(uint64_t total);
  void unmap_all();
  Result<void> map_anonymous_over(uint8_t* host, uint64_t length);

  UniqueFd memfd_;
  std::vector<Region> regions_;
  DmaWriteObserver dma_observer_;
  MemoryKind kind_ = MemoryKind::kPrivateAnonymous;
  MemoryBackingOptions options_;
  std::vector<std::string> host_warnings_;
  uint64_t page_size_ = 4096;
  std::shared_ptr<DeviceMemoryAreas> device_areas_ = std::make_shared<DeviceMemoryAreas>();
};

}  // namespace hostvisor
