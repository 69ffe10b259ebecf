// Where a qcow2 image keeps its own metadata, by host cluster: the header,
// the active L1 table and its L2 tables, the refcount table and blocks, the
// snapshot table and the snapshots' L1 tables. A guest write is checked
// against it before it reaches the file, so a crafted or damaged L2 entry that
// points a data cluster at metadata is refused instead of overwriting it
// (QEMU calls this its metadata overlap check).
//
// A sorted vector of disjoint cluster ranges: a lookup is a binary search (no
// table scan per write), and the ranges change only when metadata is
// allocated or freed, which is rare next to guest I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::block::qcow2 {

enum class MetadataKind : uint8_t {
  kHeader,
  kL1Table,
  kL2Table,
  kRefcountTable,
  kRefcountBlock,
  kSnapshotTable,
  kSnapshotL1Table,
};

const char* metadata_kind_name(MetadataKind kind);

class MetadataMap {
 public:
  // Host clusters [first, end), holding metadata of one kind.
  struct Range {
    uint64_t first = 0;
    uint64_t end = 0;
    MetadataKind kind = MetadataKind::kHeader;
  };

  // One structure as the image describes it, in bytes.
  struct Extent {
    uint64_t offset = 0;
    uint64_t bytes = 0;
    MetadataKind kind = MetadataKind::kHeader;
  };

  explicit MetadataMap(uint64_t cluster_size) : cluster_size_(cluster_size) {}

  // Replaces the whole map with these structures (each rounded out to whole
  // clusters). Two that share a cluster make the image corrupt:
  // the error names both, and the image must not be written to.
  Result<void> assign(const std::vector<Extent>& extents);

  // Adds one structure of `bytes` bytes at `offset`; an error if it shares a
  // cluster with metadata already in the map (the map is then unchanged).
  Result<void> add(uint64_t offset, uint64_t bytes, MetadataKind kind);
  // Forgets the structure that starts at `offset` (after it stopped being metadata).
  void remove(uint64_t offset);

  // A metadata range that [offset, offset + len) touches, if any.
  std::optional<Range> find(uint64_t offset, uint64_t len) const;
  bool overlaps(uint64_t offset, uint64_t len) const { return find(offset, len).has_value(); }

  // "the L1 table (host clusters 0x30000-0x3ffff)", for error messages.
  std::string describe(const Range& cluster_range) const;

 private:
  Range to_clusters(uint64_t offset, uint64_t bytes, MetadataKind kind) const;

  uint64_t cluster_size_;
  std::vector<Range> ranges_;  // in cluster units, sorted by first, disjoint
};

}  // namespace hostvisor::block::qcow2
