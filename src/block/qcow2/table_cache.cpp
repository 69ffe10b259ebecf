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
    budget_->charge(cluster_size_);
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
  auto [it, inserted] = tables_.try_emplace(offset);
  if (inserted) budget_->charge(cluster_size_);
  Table& t = it->second;
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
  if (!budget_->over()) return;
  std::vector<std::pair<uint64_t, uint64_t>> clean;
  for (const auto& [offset, t] : tables_) {
    if (!t.dirty) clean.emplace_back(t.last_use, offset);
  }
  std::sort(clean.begin(), clean.end());
  for (const auto& [last_use, offset] : clean) {
    if (tables_.size() <= 1 || budget_->used() <= budget_->limit() / 2) break;
    tables_.erase(offset);
    budget_->release(cluster_size_);
  }
}

}  // namespace hostvisor::block::qcow2
