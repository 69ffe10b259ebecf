// Numbers and layouts of the virtio memory balloon (virtio 1.2, 5.5).
#pragma once

#include <cstdint>

namespace hostvisor::virtio_balloon {

// 5.5.3 Feature bits
inline constexpr unsigned kFeatureMustTellHost = 0;
inline constexpr unsigned kFeatureStatsVq = 1;
inline constexpr unsigned kFeatureDeflateOnOom = 2;
inline constexpr unsigned kFeatureFreePageHint = 3;
inline constexpr unsigned kFeaturePagePoison = 4;
inline constexpr unsigned kFeatureReporting = 5;

// 5.5.6: inflate and deflate PFNs are always 4 KiB page numbers, whatever
// the guest's page size.
inline constexpr unsigned kPfnShift = 12;
inline constexpr uint64_t kPageSize = uint64_t{1} << kPfnShift;

// 5.5.4 Device configuration layout (both fields little-endian).
struct Config {
  uint32_t num_pages;  // the host's target, in 4 KiB pages
  uint32_t actual;     // what the driver has in the balloon (the driver writes it)
};
static_assert(sizeof(Config) == 8);
inline constexpr uint64_t kConfigActualOffset = 4;

// 5.5.6.3 Memory Statistics: one entry per statistic, packed.
#pragma pack(push, 1)
struct Stat {
  uint16_t tag;
  uint64_t value;
};
#pragma pack(pop)
static_assert(sizeof(Stat) == 10);

// 5.5.6.3.1 tags (Linux adds the last six; all are bytes or event counts).
enum StatTag : uint16_t {
  kStatSwapIn = 0,
  kStatSwapOut = 1,
  kStatMajorFaults = 2,
  kStatMinorFaults = 3,
  kStatFreeMemory = 4,
  kStatTotalMemory = 5,
  kStatAvailableMemory = 6,
  kStatDiskCaches = 7,
  kStatHugetlbAllocations = 8,
  kStatHugetlbFailures = 9,
  kStatOomKills = 10,
  kStatAllocStalls = 11,
  kStatAsyncScans = 12,
  kStatDirectScans = 13,
  kStatAsyncReclaims = 14,
  kStatDirectReclaims = 15,
};
inline constexpr uint16_t kStatTagCount = 16;

// Short names for the log, by tag.
inline constexpr const char* kStatNames[kStatTagCount] = {
    "swap_in",     "swap_out",     "major_faults",   "minor_faults",   "free",      "total",
    "available",   "caches",       "hugetlb_allocs", "hugetlb_fails",  "oom_kills", "alloc_stalls",
    "async_scans", "direct_scans", "async_reclaims", "direct_reclaims"};

}  // namespace hostvisor::virtio_balloon
