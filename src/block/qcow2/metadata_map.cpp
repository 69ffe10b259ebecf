#include "block/qcow2/metadata_map.h"

#include <algorithm>
#include <cstdio>

namespace hostvisor::block::qcow2 {

const char* metadata_kind_name(MetadataKind kind) {
  switch (kind) {
    case MetadataKind::kHeader: return "the header";
    case MetadataKind::kL1Table: return "the L1 table";
    case MetadataKind::kL2Table: return "an L2 table";
    case MetadataKind::kRefcountTable: return "the refcount table";
    case MetadataKind::kRefcountBlock: return "a refcount block";
    case MetadataKind::kSnapshotTable: return "the snapshot table";
    case MetadataKind::kSnapshotL1Table: return "a snapshot's L1 table";
  }
  return "metadata";
}

MetadataMap::Range MetadataMap::to_clusters(uint64_t offset, uint64_t bytes, MetadataKind kind) const {
  // Offsets were checked against the file (< 2^56), so this cannot wrap.
  uint64_t first = offset / cluster_size_;
  uint64_t end = (offset + std::max<uint64_t>(bytes, 1) + cluster_size_ - 1) / cluster_size_;
  return {first, end, kind};
}

std::string MetadataMap::describe(const Range& r) const {
  char where[96];
  std::snprintf(where, sizeof where, " (host bytes 0x%llx-0x%llx)",
                static_cast<unsigned long long>(r.first * cluster_size_),
                static_cast<unsigned long long>(r.end * cluster_size_ - 1));
  return metadata_kind_name(r.kind) + std::string(where);
}

Result<void> MetadataMap::assign(const std::vector<Extent>& extents) {
  ranges_.clear();
  for (const Extent& e : extents) ranges_.push_back(to_clusters(e.offset, e.bytes, e.kind));
  std::sort(ranges_.begin(), ranges_.end(), [](const Range& a, const Range& b) { return a.first < b.first; });
  for (size_t i = 1; i < ranges_.size(); ++i) {
    if (ranges_[i].first < ranges_[i - 1].end) {
      std::string what = describe(ranges_[i]) + " overlaps " + describe(ranges_[i - 1]);
      ranges_.clear();
      return Error(ErrorCode::kCorrupt, what);
    }
  }
  return ok();
}

Result<void> MetadataMap::add(uint64_t offset, uint64_t bytes, MetadataKind kind) {
  Range r = to_clusters(offset, bytes, kind);
  auto it = std::lower_bound(ranges_.begin(), ranges_.end(), r.first,
                             [](const Range& a, uint64_t first) { return a.first < first; });
  if (it != ranges_.end() && it->first < r.end) {
    return Error(ErrorCode::kCorrupt, describe(r) + " overlaps " + describe(*it));
  }
  if (it != ranges_.begin() && std::prev(it)->end > r.first) {
    return Error(ErrorCode::kCorrupt, describe(r) + " overlaps " + describe(*std::prev(it)));
  }
  ranges_.insert(it, r);
  return ok();
}

void MetadataMap::remove(uint64_t offset) {
  uint64_t first = offset / cluster_size_;
  auto it =
      std::lower_bound(ranges_.begin(), ranges_.end(), first, [](const Range& a, uint64_t f) { return a.first < f; });
  if (it != ranges_.end() && it->first == first) ranges_.erase(it);
}

std::optional<MetadataMap::Range> MetadataMap::find(uint64_t offset, uint64_t len) const {
  if (len == 0 || ranges_.empty()) return std::nullopt;
  uint64_t first = offset / cluster_size_;
  uint64_t last = (offset + len - 1) / cluster_size_;
  // The last range starting at or before `last` is the only candidate: ranges are disjoint and sorted.
  auto it =
      std::upper_bound(ranges_.begin(), ranges_.end(), last, [](uint64_t l, const Range& a) { return l < a.first; });
  if (it == ranges_.begin()) return std::nullopt;
  --it;
  if (it->end > first) return *it;
  return std::nullopt;
}

}  // namespace hostvisor::block::qcow2
