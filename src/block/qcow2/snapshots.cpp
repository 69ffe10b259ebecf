// Internal snapshots of qcow2 images: a snapshot is a copy of the L1 table
// whose tables and data clusters gain a reference; writes to shared clusters
// then copy them (see Qcow2Image::write_locked and l2_for_write).
#include <time.h>

#include <algorithm>

#include "block/qcow2/image.h"

namespace hostvisor::block {

using namespace qcow2;

std::vector<Snapshot> Qcow2Image::snapshots() const {
  std::lock_guard lock(mutex_);
  return snapshots_;
}

Result<size_t> Qcow2Image::find_snapshot(const std::string& key) const {
  for (size_t i = 0; i < snapshots_.size(); ++i) {
    if (snapshots_[i].id == key) return i;
  }
  for (size_t i = 0; i < snapshots_.size(); ++i) {
    if (snapshots_[i].name == key) return i;
  }
  return Error(ErrorCode::kNotFound, file_->path() + ": no snapshot with ID or name '" + key + "'");
}

Result<void> Qcow2Image::update_tree_refcounts(const std::vector<uint64_t>& l1, int64_t delta) {
  // The tables are on disk by now (flush_metadata() ran first): one past the end is corruption.
  uint64_t file_end = HV_TRY(file_->size());
  for (size_t i = 0; i < l1.size(); ++i) {
    uint64_t l2_off = l1[i] & kOffsetMask;
    if (l2_off == 0) continue;
    if (l2_off % cluster_size_ != 0 || l2_off < cluster_size_ || l2_off >= file_end) {
      return Error(ErrorCode::kCorrupt, "L1 entry " + std::to_string(i) + " (" + std::to_string(l2_off) +
                                            ") is misaligned, in the header or past the end of the file; run "
                                            "`hostvisor disk check` on the image");
    }
    TableCache::Table* t = HV_TRY(l2_cache_->get(l2_off));
    std::vector<uint8_t> bytes = t->bytes;  // the table may leave the cache below
    for (uint64_t j = 0; j < cluster_size_ / 8; ++j) {
      uint64_t e = load_be64(&bytes[j * 8]);
      if (e == 0) continue;
      Mapping m = HV_TRY(classify(e, 0));
      // A snapshot must not take (or drop) a reference to metadata through a bad entry.
      HV_TRY(check_reference(m));
      if (m.kind == Kind::kNormal || (m.kind == Kind::kZero && m.host != 0)) {
        HV_TRY(refcounts_->add(m.host / cluster_size_, delta));
      } else if (m.kind == Kind::kCompressed) {
        CompressedExtent x = decode_compressed(e, header_.cluster_bits);
        for (uint64_t c = x.offset / cluster_size_; c <= (x.offset + x.length - 1) / cluster_size_; ++c) {
          HV_TRY(refcounts_->add(c, delta));
        }
      }
    }
    HV_TRY(refcounts_->add(l2_off / cluster_size_, delta));
    if (delta < 0 && HV_TRY(refcounts_->get(l2_off / cluster_size_)) == 0) l2_cache_->forget(l2_off);
  }
  return ok();
}

Result<void> Qcow2Image::fix_copied_flags() {
  for (size_t i = 0; i < l1_.size(); ++i) {
    uint64_t l2_off = l1_[i] & kOffsetMask;
    if (l2_off == 0) continue;
    uint64_t rc = HV_TRY(refcounts_->get(l2_off / cluster_size_));
    uint64_t want = rc == 1 ? (l2_off | kFlagCopied) : l2_off;
    if (l1_[i] != want) {
      l1_[i] = want;
      l1_dirty_lo_ = std::min<uint64_t>(l1_dirty_lo_, i);
      l1_dirty_hi_ = std::max<uint64_t>(l1_dirty_hi_, i + 1);
      metadata_dirty_ = true;
    }
    // Entries of a shared table are all unflagged: every data cluster under it
    // has a reference per table path. (Rewriting the shared table in place is
    // fine: snapshots ignore COPIED flags.)
    TableCache::Table* t = HV_TRY(l2_cache_->get(l2_off));
    for (uint64_t j = 0; j < cluster_size_ / 8; ++j) {
      uint64_t e = t->entry(j);
      if (e == 0 || (e & kFlagCompressed)) continue;
      uint64_t host = e & kOffsetMask;
      if (host == 0) continue;
      uint64_t drc = HV_TRY(refcounts_->get(host / cluster_size_));
      uint64_t we = (drc == 1 && rc == 1) ? (e | kFlagCopied) : (e & ~kFlagCopied);
      if (we != e) {
        t->set_entry(j, we);
        metadata_dirty_ = true;
      }
    }
  }
  return ok();
}

Result<void> Qcow2Image::write_snapshot_table(std::vector<Snapshot> list) {
  std::vector<uint8_t> raw = serialize_snapshot_table(list);
  uint64_t at = 0;
  if (!raw.empty()) {
    uint64_t clusters = (raw.size() + cluster_size_ - 1) / cluster_size_;
    at = HV_TRY(refcounts_->allocate(clusters));
    raw.resize(clusters * cluster_size_, 0);
    HV_TRY(file_->write(at, raw.data(), raw.size()));
    HV_TRY(refcounts_->write_dirty());
    HV_TRY(file_->flush());
  }
  uint64_t old_offset = header_.snapshots_offset;
  uint64_t old_clusters = (snapshot_table_bytes_ + cluster_size_ - 1) / cluster_size_;
  header_.nb_snapshots = static_cast<uint32_t>(list.size());
  header_.snapshots_offset = at;
  HV_TRY(write_header());
  HV_TRY(file_->flush());
  snapshots_ = std::move(list);
  snapshot_table_bytes_ = serialize_snapshot_table(snapshots_).size();
  for (uint64_t i = 0; i < old_clusters; ++i) defer_free_cluster(old_offset + i * cluster_size_);
  HV_TRY(rebuild_metadata_map());
  return flush_metadata();
}

Result<void> Qcow2Image::create_snapshot(const std::string& name) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  if (name.empty() || name.size() > 0xffff)
    return Error(ErrorCode::kInvalidArgument, "snapshot name must be 1..65535 bytes");
  for (const auto& s : snapshots_) {
    if (s.name == name)
      return Error(ErrorCode::kBusy, file_->path() + ": a snapshot named '" + name + "' already exists");
  }
  if (snapshots_.size() >= kMaxSnapshots) return Error(ErrorCode::kOutOfRange, "too many snapshots");
  HV_TRY(flush_metadata());
  Snapshot s;
  s.l1_size = static_cast<uint32_t>(l1_.size());
  if (!l1_.empty()) {
    uint64_t clusters = (l1_.size() * 8 + cluster_size_ - 1) / cluster_size_;
    s.l1_table_offset = HV_TRY(refcounts_->allocate(clusters));
    std::vector<uint8_t> raw(clusters * cluster_size_, 0);
    for (size_t i = 0; i < l1_.size(); ++i) store_be64(&raw[i * 8], l1_[i] & ~kFlagCopied);
    HV_TRY(file_->write(s.l1_table_offset, raw.data(), raw.size()));
  }
  // The snapshot's references: durable before the active tables stop claiming sole ownership.
  HV_TRY(update_tree_refcounts(l1_, +1));
  HV_TRY(refcounts_->write_dirty());
  HV_TRY(file_->flush());
  HV_TRY(fix_copied_flags());
  HV_TRY(flush_metadata());
  uint64_t max_id = 0;
  for (const auto& other : snapshots_)
    max_id = std::max<uint64_t>(max_id, std::strtoull(other.id.c_str(), nullptr, 10));
  s.id = std::to_string(max_id + 1);
  s.name = name;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  s.date_sec = static_cast<uint32_t>(now.tv_sec);
  s.date_nsec = static_cast<uint32_t>(now.tv_nsec);
  s.disk_size = header_.size;
  std::vector<Snapshot> list = snapshots_;
  list.push_back(s);
  return write_snapshot_table(std::move(list));
}

Result<void> Qcow2Image::apply_snapshot(const std::string& key) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  size_t index = HV_TRY(find_snapshot(key));
  Snapshot s = snapshots_[index];
  HV_TRY(flush_metadata());
  std::vector<uint64_t> snap_l1 = HV_TRY(read_l1(s.l1_table_offset, s.l1_size));
  for (auto& e : snap_l1) e &= ~kFlagCopied;
  // Reference the snapshot's tree from the active table before switching to it.
  HV_TRY(update_tree_refcounts(snap_l1, +1));
  HV_TRY(refcounts_->write_dirty());
  HV_TRY(file_->flush());
  std::vector<uint64_t> old_l1 = l1_;
  uint64_t needed = std::max<uint64_t>(snap_l1.size(), l1_entries_for(s.disk_size, header_.cluster_bits));
  snap_l1.resize(needed, 0);
  if (needed != l1_.size()) {
    HV_TRY(move_l1(std::move(snap_l1), s.disk_size));
  } else {
    l1_ = snap_l1;
    l1_dirty_lo_ = 0;
    l1_dirty_hi_ = l1_.size();
    HV_TRY(write_l1());
    header_.size = s.disk_size;
    HV_TRY(write_header());
    HV_TRY(file_->flush());
  }
  HV_TRY(rebuild_metadata_map());
  // The old active tree is unreachable now.
  HV_TRY(update_tree_refcounts(old_l1, -1));
  HV_TRY(fix_copied_flags());
  HV_TRY(flush_metadata());
  HV_TRY(refcounts_->write_dirty());
  return file_->flush();
}

Result<void> Qcow2Image::delete_snapshot(const std::string& key) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  size_t index = HV_TRY(find_snapshot(key));
  Snapshot s = snapshots_[index];
  HV_TRY(flush_metadata());
  std::vector<Snapshot> list = snapshots_;
  list.erase(list.begin() + static_cast<ptrdiff_t>(index));
  HV_TRY(write_snapshot_table(std::move(list)));
  // Unreachable from the header now: drop its references.
  std::vector<uint64_t> snap_l1 = HV_TRY(read_l1(s.l1_table_offset, s.l1_size));
  HV_TRY(update_tree_refcounts(snap_l1, -1));
  uint64_t clusters = (uint64_t{s.l1_size} * 8 + cluster_size_ - 1) / cluster_size_;
  for (uint64_t i = 0; i < clusters; ++i) HV_TRY(refcounts_->add(s.l1_table_offset / cluster_size_ + i, -1));
  HV_TRY(fix_copied_flags());
  HV_TRY(flush_metadata());
  HV_TRY(refcounts_->write_dirty());
  return file_->flush();
}

}  // namespace hostvisor::block
