#include "memory/testing/hugetlb_pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "memory/memory_backing.h"

namespace hostvisor::testing {

namespace {
constexpr const char* kPoolSize = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
constexpr const char* kLockPath = "/tmp/hostvisor-hugetlb-pool.lock";

bool read_count(uint64_t& value) {
  UniqueFd fd(::open(kPoolSize, O_RDONLY | O_CLOEXEC));
  char buf[32]{};
  if (!fd.valid() || ::read(fd.get(), buf, sizeof buf - 1) <= 0) return false;
  value = std::strtoull(buf, nullptr, 10);
  return true;
}

bool write_count(uint64_t value) {
  UniqueFd fd(::open(kPoolSize, O_WRONLY | O_CLOEXEC));
  const std::string text = std::to_string(value);
  return fd.valid() && ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}
}  // namespace

HugetlbPool::HugetlbPool(uint64_t extra_pages) {
  lock_.reset(::open(kLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0666));
  if (!lock_.valid() || ::flock(lock_.get(), LOCK_EX) != 0) {
    why_ = std::string("locking ") + kLockPath + ": " + std::strerror(errno);
    return;
  }
  if (!read_count(original_)) {
    why_ = std::string("no ") + kPoolSize;
    return;
  }
  const uint64_t free_before = HostMemorySettings::read().hugetlb_free.value_or(0);
  if (!write_count(original_ + extra_pages)) {
    why_ = std::string("writing ") + kPoolSize + ": " + std::strerror(errno);
    return;
  }
  changed_ = true;
  // The kernel grows the pool only as far as it finds free 2 MiB blocks.
  if (HostMemorySettings::read().hugetlb_free.value_or(0) < free_before + extra_pages)
    why_ = "the host found no " + std::to_string(extra_pages) + " free 2 MiB blocks for the pool";
}

HugetlbPool::~HugetlbPool() {
  if (changed_) write_count(original_);
}

}  // namespace hostvisor::testing
