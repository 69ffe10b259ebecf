#include "block/qcow2/refcounts.h"

#include <algorithm>
#include <set>

namespace hostvisor::block::qcow2 {

namespace {
Error corrupt(const std::string& what) {
  return Error(ErrorCode::kCorrupt, what + " (run `hostvisor disk check --repair` on the image)");
}
}  // namespace

Refcounts::Refcounts(HostFile& file, const Header& h, TableMovedFn on_table_moved, MetadataMap& metadata,
                     std::shared_ptr<TableBudget> budget)
    : file_(file),
      cluster_size_(h.cluster_size()),
      refcount_bits_(h.refcount_bits()),
      entries_per_block_(h.cluster_size() * 8 / h.refcount_bits()),
      table_offset_(h.refcount_table_offset),
      table_clusters_(h.refcount_table_clusters),
      blocks_(file, h.cluster_size(), std::move(budget)),
      on_table_moved_(std::move(on_table_moved)),
      metadata_(metadata) {}

Result<void> Refcounts::load(uint64_t file_size) {
  uint64_t bytes = uint64_t{table_clusters_} * cluster_size_;
  std::vector<uint8_t> raw(bytes);
  HV_TRY(file_.read(table_offset_, raw.data(), raw.size()));
  end_cluster_ = (file_size + cluster_size_ - 1) / cluster_size_;
  table_.resize(bytes / 8);
  for (size_t i = 0; i < table_.size(); ++i) {
    uint64_t e = load_be64(&raw[i * 8]);
    uint64_t off = e & kOffsetMask;
    if (e != 0 && (e != off || off % cluster_size_ != 0)) {
      return corrupt("refcount table entry " + std::to_string(i) + " (" + std::to_string(e) +
                     ") is not a cluster-aligned offset");
    }
    if (off != 0 && off >= (file_size + cluster_size_ - 1) / cluster_size_ * cluster_size_) {
      return corrupt("refcount table entry " + std::to_string(i) + " points to offset " + std::to_string(off) +
                     ", past the end of the file (" + std::to_string(file_size) + " bytes)");
    }
    table_[i] = off;
  }
  return ok();
}

uint64_t Refcounts::read_entry(const TableCache::Table& b, uint64_t i) const {
  switch (refcount_bits_) {
    case 64: return load_be64(&b.bytes[i * 8]);
    case 32: return load_be32(&b.bytes[i * 4]);
    case 16: return load_be16(&b.bytes[i * 2]);
    case 8: return b.bytes[i];
    default: {
      // Sub-byte widths pack entries from the least significant bit of each byte.
      uint64_t bit = i * refcount_bits_;
      return (b.bytes[bit / 8] >> (bit % 8)) & ((1u << refcount_bits_) - 1);
    }
  }
}

void Refcounts::write_entry(TableCache::Table& b, uint64_t i, uint64_t v) {
  b.dirty = true;
  switch (refcount_bits_) {
    case 64: store_be64(&b.bytes[i * 8], v); return;
    case 32: store_be32(&b.bytes[i * 4], static_cast<uint32_t>(v)); return;
    case 16: store_be16(&b.bytes[i * 2], static_cast<uint16_t>(v)); return;
    case 8: b.bytes[i] = static_cast<uint8_t>(v); return;
    default: {
      uint64_t bit = i * refcount_bits_;
      uint8_t mask = static_cast<uint8_t>(((1u << refcount_bits_) - 1) << (bit % 8));
      b.bytes[bit / 8] = static_cast<uint8_t>((b.bytes[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
      return;
    }
  }
}

Result<uint64_t> Refcounts::get(uint64_t cluster_index) {
  uint64_t bi = cluster_index / entries_per_block_;
  if (bi >= table_.size() || table_[bi] == 0) return uint64_t{0};
  TableCache::Table* b = HV_TRY(blocks_.get(table_[bi]));
  return read_entry(*b, cluster_index % entries_per_block_);
}

Result<TableCache::Table*> Refcounts::block_for(uint64_t cluster_index, bool create) {
  uint64_t bi = cluster_index / entries_per_block_;
  if (++depth_ > 64) {
    depth_ = 0;
    return corrupt("refcount structure allocation does not converge");
  }
  struct DepthGuard {
    int& d;
    ~DepthGuard() {
      if (d > 0) --d;
    }
  } guard{depth_};
  if (bi >= table_.size()) {
    if (!create) return static_cast<TableCache::Table*>(nullptr);
    HV_TRY(grow_table(bi + 1));
  }
  for (int attempt = 0; attempt < 64; ++attempt) {
    if (table_[bi] != 0) return blocks_.get(table_[bi]);
    if (!create) return static_cast<TableCache::Table*>(nullptr);
    // The new block goes in the first free cluster; if that cluster is in the
    // range the block describes, the block describes itself.
    uint64_t c = HV_TRY(allocate_search(1));
    end_cluster_ = std::max(end_cluster_, c + 1);
    HV_TRY(metadata_.add(c * cluster_size_, cluster_size_, MetadataKind::kRefcountBlock));
    if (c / entries_per_block_ == bi) {
      TableCache::Table* b = blocks_.create(c * cluster_size_);
      write_entry(*b, c % entries_per_block_, 1);
      table_[bi] = c * cluster_size_;
      table_dirty_ = true;
      return b;
    }
    TableCache::Table* other = HV_TRY(block_for(c, true));
    if (read_entry(*other, c % entries_per_block_) != 0) {
      metadata_.remove(c * cluster_size_);
      continue;  // c became that block; pick again
    }
    write_entry(*other, c % entries_per_block_, 1);
    TableCache::Table* b = blocks_.create(c * cluster_size_);
    table_[bi] = c * cluster_size_;
    table_dirty_ = true;
    return b;
  }
  return corrupt("could not place a refcount block");
}

Result<uint64_t> Refcounts::allocate_search(uint64_t n) {
  // Everything past the last cluster in use is free; if the refcounts claim
  // far more than that, they are corrupt (and scanning them could take forever).
  uint64_t limit = std::min(kMaxOffset / cluster_size_, end_cluster_ + n + (1u << 20));
  uint64_t start = std::max<uint64_t>(free_hint_, 1);
  uint64_t run = 0;
  for (uint64_t c = start; c < limit; ++c) {
    uint64_t rc = HV_TRY(get(c));
    if (rc != 0 || metadata_.overlaps(c * cluster_size_, cluster_size_)) {
      run = 0;
      continue;
    }
    if (++run == n) return c + 1 - n;
  }
  if (limit < kMaxOffset / cluster_size_) {
    return corrupt("refcounts mark clusters far beyond the end of the image as in use");
  }
  return Error(ErrorCode::kOutOfRange, "qcow2 image is full (no free clusters below the 64 PiB limit)");
}

Result<uint64_t> Refcounts::allocate(uint64_t n) {
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint64_t first = HV_TRY(allocate_search(n));
    // Creating refcount blocks for the range may consume clusters inside it; check and retry.
    // Creating blocks for later clusters may take earlier ones, so check only once all exist.
    for (uint64_t c = first; c < first + n; ++c) HV_TRY(block_for(c, true));
    bool taken = false;
    for (uint64_t c = first; c < first + n && !taken; ++c) {
      TableCache::Table* b = HV_TRY(block_for(c, false));
      taken = b == nullptr || read_entry(*b, c % entries_per_block_) != 0 ||
              metadata_.overlaps(c * cluster_size_, cluster_size_);
    }
    if (taken) continue;
    for (uint64_t c = first; c < first + n; ++c) {
      TableCache::Table* b = HV_TRY(block_for(c, true));
      write_entry(*b, c % entries_per_block_, 1);
    }
    if (n == 1 || first == free_hint_) free_hint_ = first + n;
    end_cluster_ = std::max(end_cluster_, first + n);
    return first * cluster_size_;
  }
  return corrupt("cluster allocation does not converge");
}

bool Refcounts::allocates_in_memory(uint64_t n) {
  // Every cluster from end_cluster_ on is free, so the search ends by end_cluster_ + n.
  uint64_t last_block = (end_cluster_ + n) / entries_per_block_;
  if (last_block >= table_.size()) return false;
  for (uint64_t bi = std::max<uint64_t>(free_hint_, 1) / entries_per_block_; bi <= last_block; ++bi) {
    if (table_[bi] != 0 && blocks_.find(table_[bi]) == nullptr) return false;
  }
  return true;
}

Result<void> Refcounts::set(uint64_t cluster_index, uint64_t value) {
  if (value > max_refcount()) {
    return Error(ErrorCode::kOutOfRange, "refcount of cluster " + std::to_string(cluster_index) + " would overflow");
  }
  TableCache::Table* b = HV_TRY(block_for(cluster_index, value != 0));
  if (b == nullptr) return ok();  // already zero
  write_entry(*b, cluster_index % entries_per_block_, value);
  if (value == 0 && cluster_index < free_hint_) free_hint_ = cluster_index;
  return ok();
}

Result<void> Refcounts::add(uint64_t cluster_index, int64_t delta) {
  uint64_t cur = HV_TRY(get(cluster_index));
  if (delta < 0 && cur < static_cast<uint64_t>(-delta)) {
    return corrupt("refcount of cluster at offset " + std::to_string(cluster_index * cluster_size_) +
                   " would drop below zero");
  }
  return set(cluster_index, cur + static_cast<uint64_t>(delta));
}

Result<void> Refcounts::write_dirty() {
  HV_TRY(blocks_.write_dirty(false));
  if (table_dirty_) {
    // The blocks the table newly points to must be on disk before the table entries are.
    HV_TRY(file_.flush());
    std::vector<uint8_t> raw(uint64_t{table_clusters_} * cluster_size_, 0);
    for (size_t i = 0; i < table_.size(); ++i) store_be64(&raw[i * 8], table_[i]);
    HV_TRY(file_.write(table_offset_, raw.data(), raw.size()));
    table_dirty_ = false;
  }
  blocks_.clear_fresh();
  return ok();
}

Result<void> Refcounts::grow_table(uint64_t min_entries) {
  uint64_t per_cluster = cluster_size_ / 8;
  uint64_t entries = std::max<uint64_t>(min_entries, table_.size() * 2);
  uint64_t tc = (entries + per_cluster - 1) / per_cluster;
  // Place the new table and the blocks its own clusters need in one free run,
  // growing the estimate until it covers itself.
  uint64_t first = 0;
  uint64_t nb = 0;
  std::vector<uint64_t> missing;
  for (int round = 0;; ++round) {
    if (round > 16 || tc * cluster_size_ > kMaxRefcountTableBytes) {
      return Error(ErrorCode::kOutOfRange, "qcow2 refcount table would exceed its size limit");
    }
    first = HV_TRY(allocate_search(tc + nb));
    uint64_t last = first + tc + nb;  // exclusive
    missing.clear();
    for (uint64_t bi = first / entries_per_block_; bi <= (last - 1) / entries_per_block_; ++bi) {
      if (bi >= table_.size() || table_[bi] == 0) missing.push_back(bi);
    }
    uint64_t need_entries = std::max(entries, (last - 1) / entries_per_block_ + 1);
    uint64_t need_tc = (need_entries + per_cluster - 1) / per_cluster;
    if (missing.size() <= nb && need_tc <= tc) break;
    nb = std::max<uint64_t>(nb, missing.size());
    tc = std::max(tc, need_tc);
    entries = need_entries;
  }
  // Everything so far goes to disk first: the new table copies the old one.
  HV_TRY(write_dirty());
  uint64_t old_offset = table_offset_;
  uint32_t old_clusters = table_clusters_;
  table_.resize(tc * per_cluster, 0);
  for (size_t i = 0; i < missing.size(); ++i) {
    uint64_t off = (first + tc + i) * cluster_size_;
    HV_TRY(metadata_.add(off, cluster_size_, MetadataKind::kRefcountBlock));
    blocks_.create(off);
    table_[missing[i]] = off;
  }
  for (uint64_t c = first; c < first + tc + missing.size(); ++c) {
    TableCache::Table* b = HV_TRY(blocks_.get(table_[c / entries_per_block_]));
    write_entry(*b, c % entries_per_block_, 1);
  }
  end_cluster_ = std::max(end_cluster_, first + tc + missing.size());
  table_offset_ = first * cluster_size_;
  table_clusters_ = static_cast<uint32_t>(tc);
  table_dirty_ = true;
  HV_TRY(write_dirty());
  HV_TRY(file_.flush());
  HV_TRY(on_table_moved_(table_offset_, table_clusters_));
  metadata_.remove(old_offset);
  HV_TRY(metadata_.add(table_offset_, uint64_t{table_clusters_} * cluster_size_, MetadataKind::kRefcountTable));
  // The header now points at the new table; the old one is garbage.
  for (uint64_t i = 0; i < old_clusters; ++i) HV_TRY(add(old_offset / cluster_size_ + i, -1));
  free_hint_ = std::min(free_hint_, old_offset / cluster_size_);
  return ok();
}

}  // namespace hostvisor::block::qcow2
