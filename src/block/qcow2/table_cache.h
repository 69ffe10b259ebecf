// Cache of cluster-sized qcow2 metadata tables (L2 tables, refcount blocks),
// keyed by their host offset. Entries are written back only when the owner
// says so, because crash safety depends on the order of metadata writes.
// Its size is bounded by a TableBudget it shares with the other caches of
// the same disk (the images of a backing chain): every table it holds is
// charged to the budget.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "block/host_file.h"
#include "block/qcow2/format.h"
#include "block/qcow2/table_budget.h"

namespace hostvisor::block::qcow2 {

class TableCache {
 public:
  struct Table {
    std::vector<uint8_t> bytes;
    bool dirty = false;
    // Not yet referenced by anything on disk, so it may be written at any time.
    bool fresh = false;
    uint64_t last_use = 0;

    uint64_t entry(size_t i) const { return load_be64(&bytes[i * 8]); }
    void set_entry(size_t i, uint64_t v) {
      store_be64(&bytes[i * 8], v);
      dirty = true;
    }
  };

  TableCache(HostFile& file, uint64_t cluster_size, std::shared_ptr<TableBudget> budget)
      : file_(file), cluster_size_(cluster_size), budget_(std::move(budget)) {}
  ~TableCache() { budget_->release(tables_.size() * cluster_size_); }
  TableCache(const TableCache&) = delete;
  TableCache& operator=(const TableCache&) = delete;

  // Loads the table at offset (reading it from the file on a miss).
  Result<Table*> get(uint64_t offset);
  // The table at offset if it is cached, else nullptr; never reads the file.
  Table* find(uint64_t offset);
  // Inserts a zero-filled table at offset that is new on disk.
  Table* create(uint64_t offset);
  // Drops a table (after its cluster was freed).
  void forget(uint64_t offset) {
    if (tables_.erase(offset) != 0) budget_->release(cluster_size_);
  }

  // Writes dirty tables, fresh ones only or all.
  Result<void> write_dirty(bool fresh_only);
  bool has_dirty() const;
  // After the tables that reference them are on disk, fresh tables are ordinary ones.
  void clear_fresh() {
    for (auto& kv : tables_) kv.second.fresh = false;
  }
  // True when the disk's budget is exceeded and this cache holds more than
  // the one table it always may keep; the owner then makes everything clean
  // (in the right order) and calls trim().
  bool over_capacity() const { return tables_.size() > 1 && budget_->over(); }
  // When the budget is exceeded, evicts this cache's least recently used
  // clean tables until the disk's total is down to half the budget (so the
  // next eviction is far off) or one table is left.
  void trim();
  size_t size() const { return tables_.size(); }

 private:
  HostFile& file_;
  uint64_t cluster_size_;
  std::shared_ptr<TableBudget> budget_;
  uint64_t clock_ = 0;
  std::map<uint64_t, Table> tables_;
};

}  // namespace hostvisor::block::qcow2
