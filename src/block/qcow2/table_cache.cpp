#include "block/qcow2/table_cache.h"

#include <algorithm>

namespace hostvisor::block::qcow2 {

Result<TableCache::Table*> TableCache::get(uint64_t offset) {
  auto it = tables_.find(offset);
  if (it == tables_.end()) {
    Table t;
    t.bytes.resize(cluster_size_);
    HV_TRY(file_.read(offset, t.bytes.data(), t.bytes.size()));
    it = tables_.emplace(offset, std::move(t)).first;
  }
  it->second.last_use = ++clock_;
  return &it->second;
}

TableCache::Table* TableCache::find(uint64_t offset) {
  auto it = tables_.find(offset);
  if (it == tables_.end()) return nullptr;
  it->second.last_use = ++clock_;
  return &it->second;
}

TableCache::Table* TableCache::create(uint64_t offset) {
  Table& t = tables_[offset];
  t.bytes.assign(cluster_size_, 0);
  t.dirty = true;
  t.fresh = true;
  t.last_use = ++clock_;
  return &t;
}

Result<void> TableCache::write_dirty(bool fresh_only) {
  for (auto& [offset, t] : tables_) {
    if (!t.dirty || (fresh_only && !t.fresh)) continue;
    HV_TRY(file_.write(offset, t.bytes.data(), t.bytes.size()));
    t.dirty = false;
  }
  return ok();
}

bool TableCache::has_dirty() const {
  return std::any_of(tables_.begin(), tables_.end(), [](const auto& kv) { return kv.second.dirty; });
}

void TableCache::trim() {
  if (tables_.size() <= capacity_) return;
  // Evict the least recently used clean half.
  std::vector<std::pair<uint64_t, uint64_t>> clean;
  for (const auto& [offset, t] : tables_) {
    if (!t.dirty) clean.emplace_back(t.last_use, offset);
  }
  std::sort(clean.begin(), clean.end());
  size_t drop = std::min(clean.size(), tables_.size() - capacity_ / 2);
  for (size_t i = 0; i < drop; ++i) tables_.erase(clean[i].second);
}

}  // namespace hostvisor::block::qcow2
