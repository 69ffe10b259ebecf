// How guest RAM is backed (--memory SIZE[,hugepages=on|thp][,lock=on]
// [,prealloc=on][,merge=on][,shared=on]) and which host memory that becomes.
//
// The kind of memory is chosen so that every option takes effect: KSM merges
// only private anonymous memory, and transparent huge pages on shared memory
// need shmem huge pages, which hosts commonly disable. So RAM is private
// anonymous memory unless an option needs a file: hugepages=on (a hugetlbfs
// memfd, whose pool reservation turns a too-small pool into an error at start
// instead of a SIGBUS later) and shared=on (a shmem memfd that other processes
// can map).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor {

enum class HugePages : uint8_t {
  kOff,          // the host's default page size (THP as the host's policy decides)
  kTransparent,  // thp: MADV_HUGEPAGE on the mapping
  kHugetlb,      // hugepages=on: 2 MiB hugetlbfs pages from the host's pool
};

struct MemoryBackingOptions {
  HugePages huge_pages = HugePages::kOff;
  bool lock = false;      // mlock: never swapped out
  bool prealloc = false;  // every page populated at start
  bool merge = false;     // KSM (MADV_MERGEABLE)
  bool shared = false;    // a shared memfd, mappable by other processes
  bool operator==(const MemoryBackingOptions&) const = default;
};

enum class MemoryKind : uint8_t {
  kPrivateAnonymous,  // MAP_PRIVATE | MAP_ANONYMOUS (the default)
  kSharedMemfd,       // a shmem memfd, MAP_SHARED
  kHugetlbMemfd,      // a hugetlbfs memfd (MFD_HUGETLB), MAP_SHARED
  kPrivateFile,       // MAP_PRIVATE of a snapshot's memory file (mapped restore)
};

inline constexpr uint64_t kHugetlbPageSize = 2ull << 20;

// The kind of memory the options need, or an error for options that cannot
// be combined (one line naming both).
Result<MemoryKind> choose_memory_kind(const MemoryBackingOptions& options);

// The option text a user would type for `options`, e.g. "thp,lock=on";
// "" for the defaults.
std::string describe(const MemoryBackingOptions& options);

// Why a mapped snapshot restore cannot give these options (RAM mapped
// privately from the snapshot's file is neither huge, locked, preallocated
// nor shared), or nullopt when it can. The restore then copies RAM instead.
std::optional<std::string> mapped_restore_conflict(const MemoryBackingOptions& options);

// The host's memory settings that decide whether an option takes effect.
struct HostMemorySettings {
  std::string thp_enabled;        // /sys/kernel/mm/transparent_hugepage/enabled, the bracketed word
  std::string thp_shmem_enabled;  // .../shmem_enabled, the bracketed word
  std::optional<int> ksm_run;     // /sys/kernel/mm/ksm/run; nullopt: no KSM in this kernel
  std::optional<uint64_t> hugetlb_free, hugetlb_reserved;  // 2 MiB pool, from sysfs

  static HostMemorySettings read();
};

// What the host's settings stop from working, one line each, for the VMM to
// print at start ("never do nothing silently"). Empty when all takes effect.
std::vector<std::string> host_setting_warnings(const MemoryBackingOptions& options, MemoryKind kind,
                                               const HostMemorySettings& host);

}  // namespace hostvisor
