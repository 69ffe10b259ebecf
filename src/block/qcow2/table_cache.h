// Cache of cluster-sized qcow2 metadata tables (L2 tables, refcount blocks),
// keyed by their host offset. Entries are written back only when the owner
// says so, because crash safety depends on the order of metadata writes.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "block/host_file.h"
#include "block/qcow2/format.h"

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

  TableCache(HostFile& file, uint64_t cluster_size, size_t capacity)
      : file_(file), cluster_size_(cluster_size), capacity_(capacity < 4 ? 4 : capacity) {}

  // Loads the table at offset (reading it from the file on a miss).
  Result<Table*> get(uint64_t offset);
  // The table at offset if it is cached, else nullptr; never reads the file.
  Table* find(uint64_t offset);
  // Inserts a zero-filled table at offset that is new on disk.
  Table* create(uint64_t offset);
  // Drops a table (after its cluster was freed).
  void forget(uint64_t offset) { tables_.erase(offset); }

  // Writes dirty tables, fresh ones only or all.
  Result<void> write_dirty(bool fresh_only);
  bool has_dirty() const;
  // After the tables that reference them are on disk, fresh tables are ordinary ones.
  void clear_fresh() {
    for (auto& kv : tables_) kv.second.fresh = false;
  }
  // True when the cache holds more tables than it should; the owner then
  // makes everything clean (in the right order) and calls trim().
  bool over_capacity() const { return tables_.size() > capacity_; }
  void trim();

 private:
  HostFile& file_;
  uint64_t cluster_size_;
  size_t capacity_;
  uint64_t clock_ = 0;
  std::map<uint64_t, Table> tables_;
};

}  // namespace hostvisor::block::qcow2
