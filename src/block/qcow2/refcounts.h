// qcow2 reference counts: the refcount table, its refcount blocks and the
// cluster allocator built on them.
//
// Invariant that makes crash safety simple: every change held in this cache
// is safe to write to disk at any moment. Increments are (at worst a leak if
// nothing comes to reference the cluster), and the image applies decrements
// only after the metadata that dropped the reference is durable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "block/host_file.h"
#include "block/qcow2/format.h"
#include "block/qcow2/metadata_map.h"
#include "block/qcow2/table_cache.h"

namespace hostvisor::block::qcow2 {

class Refcounts {
 public:
  // Persists a moved refcount table in the header (offset, clusters), durably.
  using TableMovedFn = std::function<Result<void>(uint64_t offset, uint32_t clusters)>;
  // The allocator never hands out a cluster the metadata map holds (defence
  // against images whose refcounts are wrong), and it records the refcount
  // blocks and tables it places there.
  // The blocks' cache is charged to `budget`, the disk's refcount budget.
  Refcounts(HostFile& file, const Header& header, TableMovedFn on_table_moved, MetadataMap& metadata,
            std::shared_ptr<TableBudget> budget);

  // Reads and validates the refcount table.
  Result<void> load(uint64_t file_size);

  Result<uint64_t> get(uint64_t cluster_index);
  Result<void> set(uint64_t cluster_index, uint64_t value);
  Result<void> add(uint64_t cluster_index, int64_t delta);

  // Allocates n contiguous clusters (refcount 1 each); returns the host offset.
  Result<uint64_t> allocate(uint64_t n);
  // True when allocate(n) will do no I/O: the refcount table need not grow
  // and every refcount block the search may visit is cached (or not yet created).
  bool allocates_in_memory(uint64_t n);

  // Writes every dirty refcount block, then (after a flush, if it changed) the table.
  Result<void> write_dirty();
  bool has_dirty() const { return blocks_.has_dirty(); }
  bool over_capacity() const { return blocks_.over_capacity(); }
  void trim() { blocks_.trim(); }

  uint64_t table_offset() const { return table_offset_; }
  uint32_t table_clusters() const { return table_clusters_; }
  const std::vector<uint64_t>& table() const { return table_; }
  uint64_t max_refcount() const { return refcount_bits_ == 64 ? ~0ULL : (1ULL << refcount_bits_) - 1; }
  uint64_t entries_per_block() const { return entries_per_block_; }
  // Lowest cluster the next allocation search starts from.
  void reset_hint() { free_hint_ = 1; }

 private:
  uint64_t read_entry(const TableCache::Table& block, uint64_t index) const;
  void write_entry(TableCache::Table& block, uint64_t index, uint64_t value);
  Result<TableCache::Table*> block_for(uint64_t cluster_index, bool create);
  Result<void> grow_table(uint64_t min_entries);
  // First run of n free clusters (refcount 0, not metadata), without claiming it.
  Result<uint64_t> allocate_search(uint64_t n);

  HostFile& file_;
  uint64_t cluster_size_;
  uint32_t refcount_bits_;
  uint64_t entries_per_block_;
  uint64_t table_offset_;
  uint32_t table_clusters_;
  std::vector<uint64_t> table_;
  bool table_dirty_ = false;
  TableCache blocks_;
  TableMovedFn on_table_moved_;
  MetadataMap& metadata_;
  uint64_t free_hint_ = 1;
  uint64_t end_cluster_ = 0;  // one past the highest cluster known to be in use or in the file
  int depth_ = 0;
};

}  // namespace hostvisor::block::qcow2
