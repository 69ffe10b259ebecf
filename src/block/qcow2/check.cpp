#include "block/qcow2/check.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "block/host_file.h"
#include "block/qcow2/format.h"

namespace hostvisor::block {

using namespace qcow2;

namespace {

// The largest image the reference map covers (2^28 counters, 1 GiB of memory).
constexpr uint64_t kMaxCheckedClusters = 1ULL << 28;

class Checker {
 public:
  Checker(HostFile& file, Header& h, uint64_t file_size, CheckReport& report)
      : file_(file), h_(h), cs_(h.cluster_size()), report_(report) {
    clusters_ = (file_size + cs_ - 1) / cs_;
    // run() refuses a larger image, so a hostile size cannot make this allocate without bound.
    if (clusters_ <= kMaxCheckedClusters) refs_.assign(clusters_, 0);
  }

  void error(std::string msg) {
    ++report_.corruptions;
    if (report_.messages.size() < 1000) report_.messages.push_back("ERROR " + msg);
  }

  // Counts one reference to every cluster of [offset, offset+len).
  bool mark(uint64_t offset, uint64_t len, const std::string& what) {
    if (len == 0) return true;
    if (offset >= kMaxOffset || len > kMaxOffset - offset) {
      error(what + " at offset " + std::to_string(offset) + " is out of range");
      return false;
    }
    uint64_t first = offset / cs_, last = (offset + len - 1) / cs_;
    if (last >= refs_.size()) {
      error(what + " at offset " + std::to_string(offset) + " lies beyond the end of the file");
      return false;
    }
    for (uint64_t c = first; c <= last; ++c) ++refs_[c];
    return true;
  }

  Result<std::vector<uint64_t>> read_table(uint64_t offset, uint64_t entries) {
    std::vector<uint8_t> raw(entries * 8);
    HV_TRY(file_.read(offset, raw.data(), raw.size()));
    std::vector<uint64_t> t(entries);
    for (size_t i = 0; i < entries; ++i) t[i] = load_be64(&raw[i * 8]);
    return t;
  }

  // Walks one L1 table and the L2 tables and data clusters under it.
  Result<void> walk_l1(uint64_t l1_offset, uint32_t l1_size, const std::string& name, bool active) {
    if (!mark(l1_offset, uint64_t{l1_size} * 8, name + " L1 table")) return ok();
    std::vector<uint64_t> l1 = HV_TRY(read_table(l1_offset, l1_size));
    std::set<uint64_t> seen;
    for (size_t i = 0; i < l1.size(); ++i) {
      uint64_t e = l1[i];
      uint64_t off = e & kOffsetMask;
      if (off == 0) continue;
      if ((e & ~(kOffsetMask | kFlagCopied)) != 0 || off % cs_ != 0) {
        error(name + " L1 entry " + std::to_string(i) + " is invalid");
        continue;
      }
      // One L2 table under two L1 entries is corruption; walking it again would
      // also let a hostile image multiply the work.
      if (!seen.insert(off).second) {
        error(name + " L1 entry " + std::to_string(i) + " reuses the L2 table at " + std::to_string(off));
        continue;
      }
      if (!mark(off, cs_, name + " L2 table")) continue;
      if (active) active_l2_.push_back({i, e});
      std::vector<uint64_t> l2 = HV_TRY(read_table(off, cs_ / 8));
      for (size_t j = 0; j < l2.size(); ++j) {
        uint64_t d = l2[j];
        if (d == 0) continue;
        std::string where = name + " L2 table at " + std::to_string(off) + " entry " + std::to_string(j);
        if (d & kFlagCompressed) {
          CompressedExtent x = decode_compressed(d, h_.cluster_bits);
          mark(x.offset, x.length, "compressed cluster (" + where + ")");
          continue;
        }
        uint64_t host = d & kOffsetMask;
        if ((d & ~(kOffsetMask | kFlagCopied | kFlagZero)) != 0 || host % cs_ != 0) {
          error(where + " (" + std::to_string(d) + ") is invalid");
          continue;
        }
        if (host == 0) continue;
        if (mark(host, cs_, "data cluster (" + where + ")") && active) active_data_.push_back({off, j, d});
      }
    }
    return ok();
  }

  Result<void> run() {
    if (clusters_ > kMaxCheckedClusters) {
      return Error(ErrorCode::kUnsupported, "the image spans " + std::to_string(clusters_) +
                                                " clusters; the check handles up to " +
                                                std::to_string(kMaxCheckedClusters) + " (use qemu-img check)");
    }
    mark(0, cs_, "header");
    HV_TRY(walk_l1(h_.l1_table_offset, h_.l1_size, "active", true));
    if (h_.nb_snapshots > 0) {
      uint64_t avail = std::min<uint64_t>(clusters_ * cs_ - h_.snapshots_offset, kMaxSnapshotTableBytes);
      std::vector<uint8_t> raw(avail);
      HV_TRY(file_.read(h_.snapshots_offset, raw.data(), raw.size()));
      auto snaps = parse_snapshot_table(raw, h_.nb_snapshots, h_, clusters_ * cs_);
      if (!snaps.ok()) {
        error(snaps.error().message());
      } else {
        mark(h_.snapshots_offset, serialize_snapshot_table(*snaps).size(), "snapshot table");
        for (const auto& s : *snaps) HV_TRY(walk_l1(s.l1_table_offset, s.l1_size, "snapshot '" + s.name + "'", false));
      }
    }
    // Refcount structures.
    uint64_t table_bytes = uint64_t{h_.refcount_table_clusters} * cs_;
    mark(h_.refcount_table_offset, table_bytes, "refcount table");
    table_ = HV_TRY(read_table(h_.refcount_table_offset, table_bytes / 8));
    // A table that lies past the end of the file was reported by mark(); only
    // the clusters inside the file are counted.
    refcount_structure_.assign(refs_.size(), 0);
    for (uint64_t c = 0; c < h_.refcount_table_clusters && h_.refcount_table_offset / cs_ + c < refs_.size(); ++c) {
      ++refcount_structure_[h_.refcount_table_offset / cs_ + c];
    }
    per_block_ = cs_ * 8 / h_.refcount_bits();
    for (size_t i = 0; i < table_.size(); ++i) {
      uint64_t off = table_[i];
      if (off == 0) continue;
      if ((off & ~kOffsetMask) != 0 || off % cs_ != 0) {
        error("refcount table entry " + std::to_string(i) + " is invalid");
        table_[i] = 0;
        continue;
      }
      if (!mark(off, cs_, "refcount block " + std::to_string(i))) {
        table_[i] = 0;
        continue;
      }
      ++refcount_structure_[off / cs_];
      if (!block_data_.count(off)) block_data_[off] = HV_TRY(read_block(off));
      blocks_.emplace(i, block_data_[off]);
    }
    // Compare.
    uint64_t covered = table_.size() * per_block_;
    uint64_t n = refs_.size();
    for (uint64_t c = 0; c < n; ++c) {
      uint64_t rc = c < covered ? refcount(c) : 0;
      uint64_t refs = refs_[c];
      if (refs > 0) {
        ++report_.allocated_clusters;
        report_.image_end = (c + 1) * cs_;
      }
      if (rc == refs) continue;
      if (rc > refs) {
        ++report_.leaks;
        if (report_.messages.size() < 1000) {
          report_.messages.push_back("Leaked cluster " + std::to_string(c) + " refcount=" + std::to_string(rc) +
                                     " reference=" + std::to_string(refs));
        }
      } else {
        error("cluster " + std::to_string(c) + " refcount=" + std::to_string(rc) +
              " reference=" + std::to_string(refs));
      }
    }
    // Refcounts stored for clusters past the end of the file are leaks too
    // (each distinct block once, so duplicated table entries cost nothing extra).
    std::set<uint64_t> scanned;
    for (const auto& [bi, block] : blocks_) {
      if (!scanned.insert(table_[bi]).second) continue;
      for (uint64_t k = 0; k < per_block_; ++k) {
        uint64_t c = bi * per_block_ + k;
        if (c < n) continue;
        if (entry(block.get(), k) != 0) {
          ++report_.leaks;
          if (report_.messages.size() < 1000)
            report_.messages.push_back("Leaked cluster " + std::to_string(c) + " beyond the end of the file");
        }
      }
    }
    // COPIED flags of the active tables.
    for (const auto& [i, e] : active_l2_) {
      uint64_t rc = refcount((e & kOffsetMask) / cs_);
      if ((rc == 1) != ((e & kFlagCopied) != 0)) {
        error("OFLAG_COPIED L2 cluster: l1_index=" + std::to_string(i) + " refcount=" + std::to_string(rc));
        ++copied_errors_;
      }
    }
    for (const auto& d : active_data_) {
      uint64_t rc = refcount((d.entry & kOffsetMask) / cs_);
      if ((rc == 1) != ((d.entry & kFlagCopied) != 0)) {
        error("OFLAG_COPIED data cluster: l2_entry=" + std::to_string(d.entry) + " refcount=" + std::to_string(rc));
        ++copied_errors_;
      }
    }
    report_.total_clusters = (h_.size + cs_ - 1) / cs_;
    return ok();
  }

  // Rebuilds refcounts from the references and rewrites the COPIED flags.
  Result<void> repair() {
    // References without the old refcount structure, which is replaced.
    std::vector<uint64_t> refs(refs_.size());
    for (size_t c = 0; c < refs.size(); ++c) refs[c] = refs_[c] - refcount_structure_[c];
    uint64_t end = refs.size();
    while (end > 1 && refs[end - 1] == 0) --end;
    // New table and blocks go after the last used cluster; size them to cover themselves.
    uint64_t tc = 1, nb = 1;
    for (;;) {
      uint64_t total = end + tc + nb;
      uint64_t need_nb = (total + per_block_ - 1) / per_block_;
      uint64_t need_tc = (need_nb * 8 + cs_ - 1) / cs_;
      if (need_nb <= nb && need_tc <= tc) break;
      nb = std::max(nb, need_nb);
      tc = std::max(tc, need_tc);
    }
    if (tc * cs_ > kMaxRefcountTableBytes) return Error(ErrorCode::kOutOfRange, "image too large to repair");
    uint64_t max_rc = h_.refcount_bits() == 64 ? ~0ULL : (1ULL << h_.refcount_bits()) - 1;
    refs.resize(end + tc + nb, 0);
    for (uint64_t c = end; c < end + tc + nb; ++c) refs[c] = 1;
    std::vector<uint8_t> table(tc * cs_, 0);
    std::vector<uint8_t> blocks(nb * cs_, 0);
    for (uint64_t b = 0; b < nb; ++b) store_be64(&table[b * 8], (end + tc + b) * cs_);
    for (uint64_t c = 0; c < refs.size(); ++c) {
      if (refs[c] > max_rc)
        return Error(ErrorCode::kCorrupt, "cluster " + std::to_string(c) + " has too many references to repair");
      set_entry(&blocks[(c / per_block_) * cs_], c % per_block_, refs[c]);
    }
    HV_TRY(file_.write(end * cs_, table.data(), table.size()));
    HV_TRY(file_.write((end + tc) * cs_, blocks.data(), blocks.size()));
    HV_TRY(file_.flush());
    // COPIED flags from the new refcounts.
    auto new_rc = [&](uint64_t off) { return off / cs_ < refs.size() ? refs[off / cs_] : 0; };
    std::map<uint64_t, std::vector<uint8_t>> l2s;
    for (const auto& d : active_data_) {
      auto it = l2s.find(d.l2_offset);
      if (it == l2s.end()) {
        it = l2s.emplace(d.l2_offset, std::vector<uint8_t>(cs_)).first;
        HV_TRY(file_.read(d.l2_offset, it->second.data(), cs_));
      }
      uint64_t e = load_be64(&it->second[d.index * 8]);
      uint64_t want = new_rc(e & kOffsetMask) == 1 ? (e | kFlagCopied) : (e & ~kFlagCopied);
      store_be64(&it->second[d.index * 8], want);
    }
    for (const auto& [off, bytes] : l2s) {
      if (new_rc(off) == 1) HV_TRY(file_.write(off, bytes.data(), bytes.size()));
    }
    for (const auto& [i, e] : active_l2_) {
      uint64_t want = new_rc(e & kOffsetMask) == 1 ? (e | kFlagCopied) : (e & ~kFlagCopied);
      uint8_t raw[8];
      store_be64(raw, want);
      HV_TRY(file_.write(h_.l1_table_offset + i * 8, raw, 8));
    }
    HV_TRY(file_.flush());
    h_.refcount_table_offset = end * cs_;
    h_.refcount_table_clusters = static_cast<uint32_t>(tc);
    h_.incompatible_features &= ~(kIncompatDirty | kIncompatCorrupt);
    std::vector<uint8_t> head = HV_TRY(serialize_header(h_));
    HV_TRY(file_.write(0, head.data(), head.size()));
    HV_TRY(file_.flush());
    HV_TRY(file_.truncate((end + tc + nb) * cs_));
    return ok();
  }

 private:
  struct DataRef {
    uint64_t l2_offset;
    uint64_t index;
    uint64_t entry;
  };
  Result<std::vector<uint8_t>> read_block(uint64_t off) {
    std::vector<uint8_t> b(cs_);
    HV_TRY(file_.read(off, b.data(), b.size()));
    return b;
  }
  uint64_t entry(const std::vector<uint8_t>& b, uint64_t i) const {
    uint32_t bits = h_.refcount_bits();
    switch (bits) {
      case 64: return load_be64(&b[i * 8]);
      case 32: return load_be32(&b[i * 4]);
      case 16: return load_be16(&b[i * 2]);
      case 8: return b[i];
      default: return (b[i * bits / 8] >> (i * bits % 8)) & ((1u << bits) - 1);
    }
  }
  void set_entry(uint8_t* b, uint64_t i, uint64_t v) const {
    uint32_t bits = h_.refcount_bits();
    switch (bits) {
      case 64: store_be64(&b[i * 8], v); return;
      case 32: store_be32(&b[i * 4], static_cast<uint32_t>(v)); return;
      case 16: store_be16(&b[i * 2], static_cast<uint16_t>(v)); return;
      case 8: b[i] = static_cast<uint8_t>(v); return;
      default: b[i * bits / 8] |= static_cast<uint8_t>(v << (i * bits % 8));
    }
  }
  uint64_t refcount(uint64_t c) const {
    auto it = blocks_.find(c / per_block_);
    if (it == blocks_.end()) return 0;
    return entry(it->second.get(), c % per_block_);
  }

  HostFile& file_;
  Header& h_;
  uint64_t cs_;
  CheckReport& report_;
  uint64_t clusters_ = 0;
  uint64_t per_block_ = 0;
  std::vector<uint64_t> refs_;
  std::vector<uint64_t> refcount_structure_;
  std::vector<uint64_t> table_;
  std::map<uint64_t, std::vector<uint8_t>> block_data_;                            // by host offset
  std::map<uint64_t, std::reference_wrapper<const std::vector<uint8_t>>> blocks_;  // by table index
  std::vector<std::pair<uint64_t, uint64_t>> active_l2_;
  std::vector<DataRef> active_data_;
  uint64_t copied_errors_ = 0;
};

}  // namespace

Result<CheckReport> check_qcow2(const std::string& path, bool repair) {
  HostFileOptions fo;
  fo.writable = repair;
  fo.engine = EngineKind::kThreadPool;
  auto file = HV_TRY(HostFile::open(path, fo));
  uint64_t file_size = HV_TRY(file->size());
  std::vector<uint8_t> first(std::min<uint64_t>(file_size, 1ULL << kMaxClusterBits));
  HV_TRY(file->read(0, first.data(), first.size()));
  if (first.size() >= 24) {
    uint32_t bits = load_be32(&first[20]);
    if (bits >= kMinClusterBits && bits <= kMaxClusterBits && first.size() > (1ULL << bits)) first.resize(1ULL << bits);
  }
  // The corrupt flag makes normal opens refuse the image; the check is how it gets cleared.
  bool flagged_corrupt = false;
  if (first.size() >= 80 && load_be32(&first[4]) >= 3) {
    uint64_t incompat = load_be64(&first[72]);
    flagged_corrupt = (incompat & kIncompatCorrupt) != 0;
    store_be64(&first[72], incompat & ~kIncompatCorrupt);
  }
  auto parsed = parse_header(first, file_size);
  if (!parsed.ok()) return parsed.error().with_context(path);
  Header h = *parsed;
  CheckReport report;
  Checker checker(*file, h, file_size, report);
  auto r = checker.run();
  if (!r.ok()) return r.error().with_context(path);
  if (flagged_corrupt) {
    ++report.corruptions;
    report.messages.push_back("ERROR the image is flagged corrupt in its header");
  }
  if (repair && (!report.clean() || (h.incompatible_features & kIncompatDirty))) {
    HV_TRY(checker.repair());
    report.repaired = true;
  }
  return report;
}

}  // namespace hostvisor::block
