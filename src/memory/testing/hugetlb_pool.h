// A few more 2 MiB huge pages in the host's pool for one test, given back
// when it ends: the pool is host-wide, so the change is made under a lock
// file that every test touching the pool takes, and undone in the destructor.
#pragma once

#include <cstdint>
#include <string>

#include "base/fd.h"

namespace hostvisor::testing {

class HugetlbPool {
 public:
  explicit HugetlbPool(uint64_t extra_pages);
  ~HugetlbPool();
  HugetlbPool(const HugetlbPool&) = delete;
  HugetlbPool& operator=(const HugetlbPool&) = delete;

  bool ok() const { return why_.empty(); }
  const std::string& why() const { return why_; }  // why the pool could not grow

 private:
  UniqueFd lock_;
  uint64_t original_ = 0;
  bool changed_ = false;
  std::string why_;
};

}  // namespace hostvisor::testing
