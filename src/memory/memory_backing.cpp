#include "memory/memory_backing.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include "base/fd.h"

namespace hostvisor {

Result<MemoryKind> choose_memory_kind(const MemoryBackingOptions& options) {
  if (options.merge && options.huge_pages == HugePages::kHugetlb)
    return Error(ErrorCode::kInvalidArgument, "merge=on and hugepages=on cannot be combined: KSM does not merge "
                                              "hugetlbfs pages");
  if (options.merge && options.shared)
    return Error(ErrorCode::kInvalidArgument, "merge=on and shared=on cannot be combined: KSM merges only private "
                                              "anonymous memory");
  if (options.huge_pages == HugePages::kHugetlb) return MemoryKind::kHugetlbMemfd;
  if (options.shared) return MemoryKind::kSharedMemfd;
  return MemoryKind::kPrivateAnonymous;
}

std::string describe(const MemoryBackingOptions& options) {
  std::string text;
  auto add = [&text](const char* word) { text += (text.empty() ? "" : ",") + std::string(word); };
  if (options.huge_pages == HugePages::kHugetlb) add("hugepages=on");
  if (options.huge_pages == HugePages::kTransparent) add("hugepages=thp");
  if (options.lock) add("lock=on");
  if (options.prealloc) add("prealloc=on");
  if (options.merge) add("merge=on");
  if (options.shared) add("shared=on");
  return text;
}

std::optional<std::string> mapped_restore_conflict(const MemoryBackingOptions& options) {
  if (options.huge_pages == HugePages::kHugetlb) return "hugepages=on needs RAM from the huge page pool";
  if (options.huge_pages == HugePages::kTransparent)
    return "hugepages=thp gets no huge pages in a private file mapping";
  if (options.lock) return "lock=on would read the whole memory file in and pin it";
  if (options.prealloc) return "prealloc=on would read the whole memory file in";
  if (options.shared) return "shared=on needs a memfd that other processes can map";
  return std::nullopt;  // merge=on works: KSM merges the mapping's copied-on-write pages
}

namespace {

// The first line of a small sysfs file (no iostreams: they cost the VMM's
// footprint more than the rest of this file).
std::optional<std::string> read_line(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buf[256];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return std::nullopt;
  std::string line(buf, static_cast<size_t>(n));
  return line.substr(0, line.find('\n'));
}

// "always [madvise] never" -> "madvise"
std::string bracketed(const std::optional<std::string>& line) {
  if (!line) return "";
  const size_t open = line->find('['), close = line->find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return *line;
  return line->substr(open + 1, close - open - 1);
}

std::optional<uint64_t> read_number(const std::string& path) {
  auto line = read_line(path);
  if (!line) return std::nullopt;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(line->c_str(), &end, 10);
  if (end == line->c_str()) return std::nullopt;
  return value;
}

}  // namespace

HostMemorySettings HostMemorySettings::read() {
  HostMemorySettings host;
  host.thp_enabled = bracketed(read_line("/sys/kernel/mm/transparent_hugepage/enabled"));
  host.thp_shmem_enabled = bracketed(read_line("/sys/kernel/mm/transparent_hugepage/shmem_enabled"));
  if (auto run = read_number("/sys/kernel/mm/ksm/run")) host.ksm_run = static_cast<int>(*run);
  const std::string pool = "/sys/kernel/mm/hugepages/hugepages-2048kB/";
  host.hugetlb_free = read_number(pool + "free_hugepages");
  host.hugetlb_reserved = read_number(pool + "resv_hugepages");
  return host;
}

std::vector<std::string> host_setting_warnings(const MemoryBackingOptions& options, MemoryKind kind,
                                               const HostMemorySettings& host) {
  std::vector<std::string> warnings;
  if (options.huge_pages == HugePages::kTransparent) {
    if (kind == MemoryKind::kSharedMemfd) {
      // Shared RAM is shmem: its huge pages follow shmem_enabled, and
      // MADV_HUGEPAGE counts only under "advise", "always" or "within_size".
      if (host.thp_shmem_enabled == "never" || host.thp_shmem_enabled == "deny" || host.thp_shmem_enabled.empty())
        warnings.push_back("hugepages=thp with shared=on: this host's shmem huge pages are off "
                           "(/sys/kernel/mm/transparent_hugepage/shmem_enabled is '" +
                           (host.thp_shmem_enabled.empty() ? std::string("missing") : host.thp_shmem_enabled) +
                           "'), so guest RAM gets no transparent huge pages; drop shared=on to get them");
    } else if (host.thp_enabled == "never" || host.thp_enabled.empty()) {
      warnings.push_back("hugepages=thp: transparent huge pages are off on this host "
                         "(/sys/kernel/mm/transparent_hugepage/enabled is '" +
                         (host.thp_enabled.empty() ? std::string("missing") : host.thp_enabled) +
                         "'), so guest RAM gets none");
    }
  }
  if (options.merge && host.ksm_run && *host.ksm_run != 1)
    warnings.push_back("merge=on: KSM is not running on this host (/sys/kernel/mm/ksm/run is " +
                       std::to_string(*host.ksm_run) +
                       "), so guest pages are marked mergeable but nothing merges them until it is 1");
  return warnings;
}

}  // namespace hostvisor
