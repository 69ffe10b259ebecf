// Consistency check of a qcow2 image, independent of Qcow2Image so it works
// on images too damaged to open: every cluster's refcount is compared with
// the references found by walking the header, L1/L2 tables (active and
// snapshots), snapshot table and refcount structures. Repair rebuilds the
// refcount structures from those references and fixes the COPIED flags.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::block {

struct CheckReport {
  uint64_t corruptions = 0;  // refcount below the references, bad flags, bad pointers
  uint64_t leaks = 0;        // refcount above the references
  uint64_t allocated_clusters = 0;
  uint64_t total_clusters = 0;  // guest clusters (virtual size / cluster size)
  uint64_t image_end = 0;       // end of the last cluster in use
  bool repaired = false;
  std::vector<std::string> messages;
  bool clean() const { return corruptions == 0 && leaks == 0; }
};

// Errors (Result error) mean the header or the tables it points to cannot be
// read at all; damage found inside readable tables goes into the report.
Result<CheckReport> check_qcow2(const std::string& path, bool repair);

}  // namespace hostvisor::block
