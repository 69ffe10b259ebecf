#include "block/qcow2/image.h"

#include <poll.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "base/log_rate_limit.h"

namespace hostvisor::block {

using namespace qcow2;

namespace {

Error corrupt(const std::string& what) {
  return Error(ErrorCode::kCorrupt, what + " (run `hostvisor disk check` on the image)");
}

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Clusters allocated together for one sequential write.
constexpr uint64_t kMaxAllocationRun = 2048;

}  // namespace

Result<void> Qcow2Image::create(const std::string& path, const Qcow2CreateOptions& o) {
  if (o.cluster_bits < kMinClusterBits || o.cluster_bits > kMaxClusterBits) {
    return Error(ErrorCode::kInvalidArgument, "cluster size must be a power of two from 512 bytes to 2 MiB");
  }
  if (o.refcount_order > 6) return Error(ErrorCode::kInvalidArgument, "refcount bits must be 1..64");
  Header h;
  h.version = 3;
  h.cluster_bits = o.cluster_bits;
  h.refcount_order = o.refcount_order;
  h.size = o.size;
  h.backing_file = o.backing_file;
  h.backing_format = o.backing_format;
  if (o.lazy_refcounts) h.compatible_features |= kCompatLazyRefcounts;
  uint64_t cs = h.cluster_size();
  uint64_t l1_entries = l1_entries_for(o.size, o.cluster_bits);
  if (l1_entries * 8 > kMaxL1Bytes) {
    return Error(ErrorCode::kInvalidArgument, "virtual size " + std::to_string(o.size) +
                                                  " is too large for this cluster size (use a larger cluster size)");
  }
  h.l1_size = static_cast<uint32_t>(l1_entries);
  uint64_t l1_clusters = std::max<uint64_t>(1, (l1_entries * 8 + cs - 1) / cs);
  uint64_t per_block = cs * 8 / h.refcount_bits();
  // Layout: header | refcount table | refcount blocks | L1 table, sized until it covers itself.
  uint64_t blocks = 1, table_clusters = 1;
  for (;;) {
    uint64_t total = 1 + table_clusters + blocks + l1_clusters;
    uint64_t need_blocks = (total + per_block - 1) / per_block;
    uint64_t need_table = (need_blocks * 8 + cs - 1) / cs;
    if (need_blocks <= blocks && need_table <= table_clusters) break;
    blocks = std::max(blocks, need_blocks);
    table_clusters = std::max(table_clusters, need_table);
  }
  h.refcount_table_offset = cs;
  h.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
  h.l1_table_offset = (1 + table_clusters + blocks) * cs;
  uint64_t total = 1 + table_clusters + blocks + l1_clusters;

  std::vector<uint8_t> image(total * cs, 0);
  std::vector<uint8_t> head = HV_TRY(serialize_header(h));
  std::memcpy(image.data(), head.data(), head.size());
  for (uint64_t b = 0; b < blocks; ++b) store_be64(&image[cs + b * 8], (1 + table_clusters + b) * cs);
  // Every cluster of the layout has refcount 1 (one block per per_block clusters).
  for (uint64_t c = 0; c < total; ++c) {
    uint8_t* block = &image[(1 + table_clusters + c / per_block) * cs];
    uint64_t i = c % per_block;
    uint32_t bits = h.refcount_bits();
    if (bits >= 8) {
      uint8_t* e = block + i * (bits / 8);
      e[bits / 8 - 1] = 1;  // big-endian 1
    } else {
      block[i * bits / 8] |= static_cast<uint8_t>(1u << (i * bits % 8));
    }
  }
  HostFileOptions fo;
  fo.create = true;
  fo.engine = EngineKind::kThreadPool;
  auto file = HV_TRY(HostFile::open(path, fo));
  HV_TRY(file->write(0, image.data(), image.size()));
  return file->flush();
}

Result<std::unique_ptr<Qcow2Image>> Qcow2Image::open(std::unique_ptr<HostFile> file, CacheBudget budget) {
  std::unique_ptr<Qcow2Image> img(new Qcow2Image(std::move(file)));
  img->budget_ = std::move(budget);
  uint64_t size = HV_TRY(img->file_->size());
  auto loaded = img->load(size);
  if (!loaded.ok()) return loaded.error().with_context(img->file_->path());
  return img;
}

Result<void> Qcow2Image::load(uint64_t file_size) {
  // The header lives in the first cluster; read the largest possible and let the parser judge.
  std::vector<uint8_t> first(std::min<uint64_t>(file_size, 1ULL << kMaxClusterBits));
  HV_TRY(file_->read(0, first.data(), first.size()));
  if (first.size() >= 24) {
    uint32_t bits = load_be32(&first[20]);
    if (bits >= kMinClusterBits && bits <= kMaxClusterBits && first.size() > (1ULL << bits)) first.resize(1ULL << bits);
  }
  header_ = HV_TRY(parse_header(first, file_size));
  cluster_size_ = header_.cluster_size();
  l2_bits_ = header_.cluster_bits - 3;
  if (file_->writable() && (header_.incompatible_features & kIncompatDirty)) {
    return Error(ErrorCode::kCorrupt,
                 "the image was not closed cleanly while using lazy refcounts (dirty bit set); run `hostvisor disk "
                 "check --repair` before writing to it");
  }
  // L1 table.
  l1_ = HV_TRY(read_l1(header_.l1_table_offset, header_.l1_size));
  for (size_t i = 0; i < l1_.size(); ++i) {
    uint64_t e = l1_[i];
    if ((e & ~(kOffsetMask | kFlagCopied)) != 0 || (e & kOffsetMask) % cluster_size_ != 0) {
      return corrupt("L1 entry " + std::to_string(i) + " (" + hex(e) + ") has reserved bits set or is misaligned");
    }
    uint64_t l2_offset = e & kOffsetMask;
    if (l2_offset != 0 && l2_offset + cluster_size_ > (file_size + cluster_size_ - 1) / cluster_size_ * cluster_size_) {
      return corrupt("L1 entry " + std::to_string(i) + " points to an L2 table at " + hex(l2_offset) +
                     ", past the end of the file (" + std::to_string(file_size) + " bytes)");
    }
  }
  metadata_ = std::make_unique<MetadataMap>(cluster_size_);
  l2_cache_ = std::make_unique<TableCache>(*file_, cluster_size_, budget_.l2);
  refcounts_ = std::make_unique<Refcounts>(
      *file_, header_,
      [this](uint64_t offset, uint32_t clusters) -> Result<void> {
        header_.refcount_table_offset = offset;
        header_.refcount_table_clusters = clusters;
        HV_TRY(write_header());
        return file_->flush();
      },
      *metadata_, budget_.refcounts);
  HV_TRY(refcounts_->load(file_size));
  // Snapshot table.
  if (header_.nb_snapshots > 0) {
    uint64_t avail = std::min<uint64_t>(file_size - header_.snapshots_offset, kMaxSnapshotTableBytes);
    std::vector<uint8_t> raw(avail);
    HV_TRY(file_->read(header_.snapshots_offset, raw.data(), raw.size()));
    snapshots_ = HV_TRY(parse_snapshot_table(raw, header_.nb_snapshots, header_, file_size));
    snapshot_table_bytes_ = serialize_snapshot_table(snapshots_).size();
  }
  HV_TRY(rebuild_metadata_map());
  if (file_->writable() && header_.autoclear_features != 0) {
    // Autoclear features (such as bitmaps) we do not maintain become invalid once we write.
    header_.autoclear_features = 0;
    HV_TRY(write_header());
    HV_TRY(file_->flush());
  }
  return ok();
}

Qcow2Image::~Qcow2Image() {
  while (direct_requests_ + parked_.size() + held_flushes_.size() > 0) poll_completions(true);
  shutdown_async();
  if (file_ && file_->writable() && refcounts_ && !corrupt_) {
    auto r = flush();
    if (r.ok() && refcounts_->has_dirty()) {
      // Frees applied by the last flush; losing them would only leak clusters.
      r = refcounts_->write_dirty();
      if (r.ok()) r = file_->flush();
    }
    if (!r.ok()) HV_LOG_ERROR("{}: closing: {}", file_->path(), r.error().message());
  }
}

Result<std::vector<uint64_t>> Qcow2Image::read_l1(uint64_t offset, uint32_t entries) {
  std::vector<uint8_t> raw(uint64_t{entries} * 8);
  HV_TRY(file_->read(offset, raw.data(), raw.size()));
  std::vector<uint64_t> l1(entries);
  for (size_t i = 0; i < entries; ++i) l1[i] = load_be64(&raw[i * 8]);
  return l1;
}

Result<void> Qcow2Image::rebuild_metadata_map() {
  std::vector<MetadataMap::Extent> extents;
  extents.push_back({0, cluster_size_, MetadataKind::kHeader});
  extents.push_back({header_.l1_table_offset, l1_.size() * 8, MetadataKind::kL1Table});
  extents.push_back({refcounts_->table_offset(), uint64_t{refcounts_->table_clusters()} * cluster_size_,
                     MetadataKind::kRefcountTable});
  for (uint64_t block : refcounts_->table()) {
    if (block != 0) extents.push_back({block, cluster_size_, MetadataKind::kRefcountBlock});
  }
  if (snapshot_table_bytes_ > 0) {
    extents.push_back({header_.snapshots_offset, snapshot_table_bytes_, MetadataKind::kSnapshotTable});
  }
  for (const Snapshot& snap : snapshots_) {
    if (snap.l1_size > 0) {
      extents.push_back({snap.l1_table_offset, uint64_t{snap.l1_size} * 8, MetadataKind::kSnapshotL1Table});
    }
  }
  for (uint64_t e : l1_) {
    if ((e & kOffsetMask) != 0) extents.push_back({e & kOffsetMask, cluster_size_, MetadataKind::kL2Table});
  }
  // Metadata sharing a cluster would be overwritten by the first write to
  // either. Reading such an image harms nothing; writing to it is refused.
  auto assigned = metadata_->assign(extents);
  if (!assigned.ok() && file_->writable()) return mark_corrupt(assigned.error().message());
  return ok();
}

Result<void> Qcow2Image::check_data_write(uint64_t host, uint64_t len, uint64_t guest_offset) {
  auto hit = metadata_->find(host, len);
  if (!hit) return ok();
  return mark_corrupt("the data cluster for guest offset " + hex(guest_offset) + " is at host offset " + hex(host) +
                      ", inside " + metadata_->describe(*hit) + "; the write was refused");
}

Error Qcow2Image::mark_corrupt(const std::string& what) {
  std::string message = file_->path() + ": " + what;
  if (!corrupt_) {
    // What is pending was checked as it was made; only the bad write is not done.
    auto pending = flush_metadata();
    corrupt_ = true;
    header_.incompatible_features |= kIncompatCorrupt;
    auto marked = write_header();
    if (marked.ok()) marked = file_->flush();
    if (!pending.ok() || !marked.ok()) {
      HV_LOG_ERROR("{}: marking the image corrupt: {}", file_->path(),
                   (!pending.ok() ? pending : marked).error().message());
    }
  }
  HV_LOG_ERROR_LIMITED("{}", message);
  return Error(ErrorCode::kCorrupt, message +
                                        ". The image is marked corrupt and refuses writes until "
                                        "`hostvisor disk check --repair` has repaired it");
}

Result<void> Qcow2Image::require_writable() const {
  HV_TRY(check_writable());
  if (corrupt_) {
    return Error(ErrorCode::kCorrupt, file_->path() +
                                          ": the image was marked corrupt after a write aimed at its own metadata; "
                                          "run `hostvisor disk check --repair` on it before writing to it");
  }
  return ok();
}

Result<Qcow2Image::Mapping> Qcow2Image::classify(uint64_t e, uint64_t guest_offset) const {
  if (e & kFlagCompressed) {
    CompressedExtent x = decode_compressed(e, header_.cluster_bits);
    if (x.offset == 0 || x.offset >= kMaxOffset) {
      return corrupt("compressed cluster for guest offset " + hex(guest_offset) + " has an invalid host offset");
    }
    return Mapping{Kind::kCompressed, e, x.offset};
  }
  if ((e & ~(kOffsetMask | kFlagCopied | kFlagZero)) != 0) {
    return corrupt("L2 entry for guest offset " + hex(guest_offset) + " (" + hex(e) + ") has reserved bits set");
  }
  uint64_t host = e & kOffsetMask;
  if (host % cluster_size_ != 0) {
    return corrupt("L2 entry for guest offset " + hex(guest_offset) + " points to unaligned host offset " + hex(host));
  }
  if (e & kFlagZero) {
    if (header_.version < 3) return corrupt("zero cluster flag in a version 2 image at " + hex(guest_offset));
    return Mapping{Kind::kZero, e, host};
  }
  if (host == 0) return Mapping{Kind::kUnallocated, e, 0};
  // A host cluster inside metadata (the header included) is refused when written (check_data_write).
  return Mapping{Kind::kNormal, e, host};
}

Result<uint64_t> Qcow2Image::l2_table_offset(uint64_t l1_index, bool* bad) const {
  *bad = false;
  if (l1_index >= l1_.size()) return uint64_t{0};
  uint64_t off = l1_[l1_index] & kOffsetMask;
  if (off != 0 && off < cluster_size_) {
    return corrupt("L1 entry " + std::to_string(l1_index) + " points into the header");
  }
  return off;
}

Result<Qcow2Image::Mapping> Qcow2Image::lookup(uint64_t guest_offset) {
  uint64_t l1_index = guest_offset >> (header_.cluster_bits + l2_bits_);
  bool bad = false;
  uint64_t l2_off = HV_TRY(l2_table_offset(l1_index, &bad));
  if (l2_off == 0) return Mapping{Kind::kUnallocated, 0, 0};
  TableCache::Table* t = HV_TRY(l2_cache_->get(l2_off));
  uint64_t idx = (guest_offset >> header_.cluster_bits) & ((1ULL << l2_bits_) - 1);
  return classify(t->entry(idx), guest_offset);
}

std::optional<Result<Qcow2Image::Mapping>> Qcow2Image::lookup_cached(uint64_t guest_offset) {
  uint64_t l1_index = guest_offset >> (header_.cluster_bits + l2_bits_);
  bool bad = false;
  auto l2_off = l2_table_offset(l1_index, &bad);
  if (!l2_off.ok()) return Result<Mapping>(l2_off.error());
  if (*l2_off == 0) return Result<Mapping>(Mapping{Kind::kUnallocated, 0, 0});
  TableCache::Table* t = l2_cache_->find(*l2_off);
  if (t == nullptr) return std::nullopt;
  uint64_t idx = (guest_offset >> header_.cluster_bits) & ((1ULL << l2_bits_) - 1);
  return classify(t->entry(idx), guest_offset);
}

Result<bool> Qcow2Image::is_allocated(uint64_t offset) {
  std::lock_guard lock(mutex_);
  Mapping m = HV_TRY(lookup(offset));
  return m.kind != Kind::kUnallocated;
}

Result<const std::vector<uint8_t>*> Qcow2Image::decompress(uint64_t entry) {
  if (entry == compressed_cache_entry_ && !compressed_cache_.empty()) return &compressed_cache_;
  CompressedExtent x = decode_compressed(entry, header_.cluster_bits);
  // Compressed data never needs more than a cluster plus a sector of slack.
  uint64_t len = std::min<uint64_t>(x.length, cluster_size_ + 512);
  std::vector<uint8_t> in(len);
  HV_TRY(file_->read(x.offset, in.data(), in.size()));
  compressed_cache_.assign(cluster_size_, 0);
  compressed_cache_entry_ = 0;
  z_stream z{};
  if (inflateInit2(&z, -12) != Z_OK) return Error(ErrorCode::kInternal, "zlib inflateInit2 failed");
  z.next_in = in.data();
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = compressed_cache_.data();
  z.avail_out = static_cast<uInt>(compressed_cache_.size());
  int rc = inflate(&z, Z_FINISH);
  bool full = z.avail_out == 0;
  inflateEnd(&z);
  // The stream may end exactly at the cluster's end or carry trailing padding.
  if (!(rc == Z_STREAM_END || ((rc == Z_OK || rc == Z_BUF_ERROR) && full)) || !full) {
    return corrupt("compressed cluster at host offset " + hex(x.offset) + " does not decompress to a full cluster");
  }
  compressed_cache_entry_ = entry;
  return &compressed_cache_;
}

Result<void> Qcow2Image::read_backing(uint64_t guest_offset, std::span<const iovec> iov) {
  size_t len = iov_bytes(iov);
  uint64_t bsize = backing_ ? backing_->virtual_size() : 0;
  if (guest_offset >= bsize) {
    iov_fill_zero(iov);
    return ok();
  }
  uint64_t from_backing = std::min<uint64_t>(len, bsize - guest_offset);
  if (from_backing == len) return backing_->readv(guest_offset, iov);
  HV_TRY(backing_->readv(guest_offset, iov_slice(iov, 0, from_backing)));
  iov_fill_zero(iov_slice(iov, from_backing, len - from_backing));
  return ok();
}

Result<void> Qcow2Image::read_mapped(const Mapping& m, uint64_t guest_offset, std::span<const iovec> iov) {
  uint64_t in_cluster = guest_offset & (cluster_size_ - 1);
  switch (m.kind) {
    case Kind::kUnallocated: return read_backing(guest_offset, iov);
    case Kind::kZero: iov_fill_zero(iov); return ok();
    case Kind::kNormal: return file_->readv(m.host + in_cluster, iov);
    case Kind::kCompressed: {
      const std::vector<uint8_t>* data = HV_TRY(decompress(m.entry));
      iov_copy_in(iov, data->data() + in_cluster);
      return ok();
    }
  }
  return ok();
}

Result<void> Qcow2Image::readv(uint64_t offset, std::span<const iovec> iov) {
  std::lock_guard lock(mutex_);
  size_t len = iov_bytes(iov);
  HV_TRY(check_range(offset, len));
  size_t pos = 0;
  while (pos < len) {
    uint64_t guest = offset + pos;
    Mapping m = HV_TRY(lookup(guest));
    uint64_t chunk = std::min<uint64_t>(len - pos, cluster_size_ - (guest & (cluster_size_ - 1)));
    // Merge following clusters that are contiguous on the host into one read.
    if (m.kind == Kind::kNormal) {
      while (pos + chunk < len && chunk < (8u << 20)) {
        Mapping next = HV_TRY(lookup(guest + chunk));
        uint64_t expect = m.host + (guest & (cluster_size_ - 1)) + chunk;
        if (next.kind != Kind::kNormal || next.host != expect) break;
        chunk += std::min<uint64_t>(len - pos - chunk, cluster_size_);
      }
    } else if (m.kind != Kind::kCompressed) {
      while (pos + chunk < len) {
        Mapping next = HV_TRY(lookup(guest + chunk));
        if (next.kind != m.kind) break;
        chunk += std::min<uint64_t>(len - pos - chunk, cluster_size_);
      }
    }
    HV_TRY(read_mapped(m, guest, iov_slice(iov, pos, chunk)));
    pos += chunk;
  }
  // Reads load tables too (this image's and, through read_backing, the
  // chain's): without this a read-only image would keep every one it met.
  trim_clean_tables();
  return ok();
}

Result<TableCache::Table*> Qcow2Image::l2_for_write(uint64_t guest_offset) {
  uint64_t l1_index = guest_offset >> (header_.cluster_bits + l2_bits_);
  if (l1_index >= l1_.size()) return Error(ErrorCode::kInternal, "guest offset beyond the L1 table");
  bool bad = false;
  uint64_t off = HV_TRY(l2_table_offset(l1_index, &bad));
  auto mark_l1 = [&](uint64_t value) {
    l1_[l1_index] = value;
    l1_dirty_lo_ = std::min(l1_dirty_lo_, l1_index);
    l1_dirty_hi_ = std::max(l1_dirty_hi_, l1_index + 1);
    metadata_dirty_ = true;
  };
  if (off == 0) {
    uint64_t fresh = HV_TRY(refcounts_->allocate(1));
    HV_TRY(metadata_->add(fresh, cluster_size_, MetadataKind::kL2Table));
    TableCache::Table* t = l2_cache_->create(fresh);
    mark_l1(fresh | kFlagCopied);
    return t;
  }
  TableCache::Table* t = HV_TRY(l2_cache_->get(off));
  if (l1_[l1_index] & kFlagCopied) return t;
  uint64_t rc = HV_TRY(refcounts_->get(off / cluster_size_));
  if (rc == 0) return corrupt("L2 table at " + hex(off) + " is in use but has refcount 0");
  if (rc == 1) {
    mark_l1(off | kFlagCopied);
    return t;
  }
  // Shared with a snapshot: copy the table. Its data clusters stay shared, so
  // the copy's entries lose the COPIED flag (each data cluster now has >= 2 references).
  std::vector<uint8_t> bytes = t->bytes;
  uint64_t copy = HV_TRY(refcounts_->allocate(1));
  HV_TRY(metadata_->add(copy, cluster_size_, MetadataKind::kL2Table));
  // The old table is a snapshot's now, which the guest cannot write through.
  metadata_->remove(off);
  TableCache::Table* nt = l2_cache_->create(copy);
  nt->bytes = std::move(bytes);
  for (uint64_t i = 0; i < cluster_size_ / 8; ++i) {
    uint64_t e = nt->entry(i);
    if (e & kFlagCopied) nt->set_entry(i, e & ~kFlagCopied);
  }
  mark_l1(copy | kFlagCopied);
  defer_free_cluster(off);
  return nt;
}

Result<void> Qcow2Image::check_reference(const Mapping& m) {
  uint64_t host = m.host, len = cluster_size_;
  if (m.kind == Kind::kCompressed) {
    CompressedExtent x = decode_compressed(m.entry, header_.cluster_bits);
    host = x.offset;
    len = x.length;
  } else if (m.kind != Kind::kNormal && !(m.kind == Kind::kZero && m.host != 0)) {
    return ok();
  }
  auto hit = metadata_->find(host, len);
  if (!hit) return ok();
  return mark_corrupt("an L2 entry (" + hex(m.entry) + ") points a data cluster into " + metadata_->describe(*hit));
}

Result<void> Qcow2Image::check_references() {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  for (uint64_t i = 0; i < l1_.size(); ++i) {
    bool bad = false;
    uint64_t l2_off = HV_TRY(l2_table_offset(i, &bad));
    if (l2_off == 0) continue;
    TableCache::Table* t = HV_TRY(l2_cache_->get(l2_off));
    std::vector<uint8_t> bytes = t->bytes;  // the table may leave the cache below
    for (uint64_t j = 0; j < cluster_size_ / 8; ++j) {
      uint64_t guest = ((i << l2_bits_) + j) << header_.cluster_bits;
      Mapping m = HV_TRY(classify(load_be64(&bytes[j * 8]), guest));
      HV_TRY(check_reference(m));
    }
    HV_TRY(maybe_trim_caches());
  }
  return ok();
}

Result<void> Qcow2Image::defer_free(const Mapping& m) {
  // Dropping a reference that points into metadata would free the metadata.
  HV_TRY(check_reference(m));
  if (m.kind == Kind::kNormal || (m.kind == Kind::kZero && m.host != 0)) {
    defer_free_cluster(m.host);
  } else if (m.kind == Kind::kCompressed) {
    CompressedExtent x = decode_compressed(m.entry, header_.cluster_bits);
    uint64_t first = x.offset / cluster_size_;
    uint64_t last = (x.offset + x.length - 1) / cluster_size_;
    for (uint64_t c = first; c <= last; ++c) pending_frees_.push_back(c);
  }
  return ok();
}

Result<void> Qcow2Image::writev(uint64_t offset, std::span<const iovec> iov) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  HV_TRY(check_range(offset, iov_bytes(iov)));
  HV_TRY(write_locked(offset, iov));
  return maybe_trim_caches();
}

Result<void> Qcow2Image::write_locked(uint64_t offset, std::span<const iovec> iov) {
  size_t len = iov_bytes(iov);
  size_t pos = 0;
  const uint64_t cmask = cluster_size_ - 1;
  while (pos < len) {
    uint64_t guest = offset + pos;
    TableCache::Table* t = HV_TRY(l2_for_write(guest));
    uint64_t idx = (guest >> header_.cluster_bits) & ((1ULL << l2_bits_) - 1);
    uint64_t l2_entries = 1ULL << l2_bits_;
    Mapping m = HV_TRY(classify(t->entry(idx), guest));
    bool in_place = false;
    if (m.kind == Kind::kNormal) {
      if (m.entry & kFlagCopied) {
        in_place = true;
      } else {
        uint64_t rc = HV_TRY(refcounts_->get(m.host / cluster_size_));
        if (rc == 0) return corrupt("data cluster at " + hex(m.host) + " is in use but has refcount 0");
        if (rc == 1) {
          t->set_entry(idx, m.entry | kFlagCopied);
          metadata_dirty_ = true;
          in_place = true;
        }
      }
    }
    if (in_place) {
      // Extend over following in-place clusters that are contiguous on the host.
      uint64_t chunk = std::min<uint64_t>(len - pos, cluster_size_ - (guest & cmask));
      uint64_t i = idx + 1;
      while (pos + chunk < len && i < l2_entries) {
        uint64_t e = t->entry(i);
        if ((e & (kFlagCopied | kFlagCompressed | kFlagZero)) != kFlagCopied ||
            (e & kOffsetMask) != m.host + (guest & cmask) + chunk) {
          break;
        }
        chunk += std::min<uint64_t>(len - pos - chunk, cluster_size_);
        ++i;
      }
      HV_TRY(check_data_write(m.host + (guest & cmask), chunk, guest));
      HV_TRY(file_->writev(m.host + (guest & cmask), iov_slice(iov, pos, chunk)));
      pos += chunk;
      continue;
    }
    // Allocation: this cluster and the following ones in the same L2 table that
    // also need new clusters get one contiguous host run.
    uint64_t head = guest & cmask;
    uint64_t end = guest + (len - pos);  // guest end of the request
    uint64_t n = 1;
    while (n < kMaxAllocationRun && idx + n < l2_entries && (guest - head) + n * cluster_size_ < end) {
      uint64_t e = t->entry(idx + n);
      Mapping nm = HV_TRY(classify(e, guest - head + n * cluster_size_));
      if (nm.kind == Kind::kNormal) break;  // in place, or shared: handled on its own
      ++n;
    }
    uint64_t run_start = guest - head;
    uint64_t run_end = run_start + n * cluster_size_;
    uint64_t data_end = std::min(end, run_end);
    uint64_t tail = run_end - data_end;
    uint64_t host = HV_TRY(refcounts_->allocate(n));
    // Copy-on-write fill for the parts of the first and last clusters the guest
    // does not write. Zeros need not be written where the file has never had data.
    bool fresh_space = host >= file_->untouched_from();
    uint64_t last_cluster = run_end - cluster_size_;
    Mapping lm = n == 1 ? m : HV_TRY(classify(t->entry(idx + n - 1), last_cluster));
    auto reads_zero = [&](const Mapping& mm, uint64_t at) {
      return mm.kind == Kind::kZero || (mm.kind == Kind::kUnallocated && (!backing_ || at >= backing_->virtual_size()));
    };
    bool skip_head = fresh_space && reads_zero(m, run_start);
    bool skip_tail = fresh_space && reads_zero(lm, data_end);
    std::vector<uint8_t> head_buf(skip_head ? 0 : head), tail_buf(skip_tail ? 0 : tail);
    if (head > 0 && !skip_head) {
      iovec v{head_buf.data(), head};
      HV_TRY(read_mapped(m, run_start, {&v, 1}));
    }
    if (tail > 0 && !skip_tail) {
      iovec v{tail_buf.data(), tail};
      HV_TRY(read_mapped(lm, data_end, {&v, 1}));
    }
    std::vector<iovec> parts;
    if (head > 0 && !skip_head) parts.push_back({head_buf.data(), head});
    for (const auto& v : iov_slice(iov, pos, data_end - guest)) parts.push_back(v);
    if (tail > 0 && !skip_tail) parts.push_back({tail_buf.data(), tail});
    HV_TRY(file_->writev(skip_head ? host + head : host, parts));
    // The cache may have been trimmed by allocation; fetch the table again.
    t = HV_TRY(l2_for_write(guest));
    for (uint64_t i = 0; i < n; ++i) {
      Mapping old = HV_TRY(classify(t->entry(idx + i), run_start + i * cluster_size_));
      HV_TRY(defer_free(old));
      t->set_entry(idx + i, (host + i * cluster_size_) | kFlagCopied);
    }
    metadata_dirty_ = true;
    pos += data_end - guest;
  }
  return ok();
}

Result<void> Qcow2Image::zero_clusters(uint64_t offset, uint64_t length, ZeroMode mode) {
  const bool discard = mode != ZeroMode::kZero;
  const uint64_t cmask = cluster_size_ - 1;
  uint64_t end = offset + length;
  uint64_t first_full = (offset + cmask) & ~cmask;
  uint64_t last_full = end & ~cmask;
  // A cluster past the virtual size's end still counts as whole when the range reaches the end.
  if (end == header_.size) last_full = (end + cmask) & ~cmask;
  auto partial = [&](uint64_t from, uint64_t to) -> Result<void> {
    if (from >= to || discard) return ok();  // discard of a partial cluster is a no-op
    std::vector<uint8_t> zeros(to - from, 0);
    iovec v{zeros.data(), zeros.size()};
    return write_locked(from, {&v, 1});
  };
  if (first_full >= last_full) return partial(offset, end);
  HV_TRY(partial(offset, first_full));
  for (uint64_t c = first_full; c < last_full; c += cluster_size_) {
    Mapping m = HV_TRY(lookup(c));
    uint64_t desired;
    if ((discard && !backing_) || mode == ZeroMode::kDeallocate) {
      desired = 0;
    } else if (header_.version >= 3) {
      desired = kFlagZero;
    } else if (discard) {
      continue;  // version 2 cannot express zeros; discard is advisory
    } else {
      uint64_t to = std::min(c + cluster_size_, end);
      HV_TRY(partial(c, to));
      continue;
    }
    if (desired == 0 && m.kind == Kind::kUnallocated) continue;
    if (desired == kFlagZero && m.kind == Kind::kZero && m.host == 0) continue;
    TableCache::Table* t = HV_TRY(l2_for_write(c));
    uint64_t idx = (c >> header_.cluster_bits) & ((1ULL << l2_bits_) - 1);
    Mapping cur = HV_TRY(classify(t->entry(idx), c));
    HV_TRY(defer_free(cur));
    t->set_entry(idx, desired);
    metadata_dirty_ = true;
  }
  return partial(std::min(end, last_full), end);
}

Result<void> Qcow2Image::change_range(uint64_t offset, uint64_t length, ZeroMode mode) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  HV_TRY(check_range(offset, length));
  HV_TRY(zero_clusters(offset, length, mode));
  return maybe_trim_caches();
}

Result<void> Qcow2Image::discard(uint64_t offset, uint64_t length) {
  return change_range(offset, length, ZeroMode::kDiscard);
}

Result<void> Qcow2Image::write_zeroes(uint64_t offset, uint64_t length) {
  return change_range(offset, length, ZeroMode::kZero);
}

Result<void> Qcow2Image::deallocate(uint64_t offset, uint64_t length) {
  return change_range(offset, length, ZeroMode::kDeallocate);
}

Result<void> Qcow2Image::write_header() {
  std::vector<uint8_t> bytes = HV_TRY(serialize_header(header_));
  return file_->write(0, bytes.data(), bytes.size());
}

Result<void> Qcow2Image::move_l1(std::vector<uint64_t> entries, uint64_t virtual_size) {
  uint64_t clusters = std::max<uint64_t>(1, (entries.size() * 8 + cluster_size_ - 1) / cluster_size_);
  uint64_t at = HV_TRY(refcounts_->allocate(clusters));
  std::vector<uint8_t> raw(clusters * cluster_size_, 0);
  for (size_t i = 0; i < entries.size(); ++i) store_be64(&raw[i * 8], entries[i]);
  HV_TRY(file_->write(at, raw.data(), raw.size()));
  HV_TRY(refcounts_->write_dirty());
  HV_TRY(file_->flush());
  uint64_t old_offset = header_.l1_table_offset;
  uint64_t old_clusters = (l1_.size() * 8 + cluster_size_ - 1) / cluster_size_;
  header_.l1_table_offset = at;
  header_.l1_size = static_cast<uint32_t>(entries.size());
  header_.size = virtual_size;
  l1_ = std::move(entries);
  HV_TRY(write_header());
  HV_TRY(file_->flush());
  for (uint64_t i = 0; i < old_clusters; ++i) defer_free_cluster(old_offset + i * cluster_size_);
  return rebuild_metadata_map();
}

Result<void> Qcow2Image::write_l1() {
  if (l1_dirty_lo_ >= l1_dirty_hi_) return ok();
  std::vector<uint8_t> raw((l1_dirty_hi_ - l1_dirty_lo_) * 8);
  for (uint64_t i = l1_dirty_lo_; i < l1_dirty_hi_; ++i) store_be64(&raw[(i - l1_dirty_lo_) * 8], l1_[i]);
  HV_TRY(file_->write(header_.l1_table_offset + l1_dirty_lo_ * 8, raw.data(), raw.size()));
  l1_dirty_lo_ = UINT64_MAX;
  l1_dirty_hi_ = 0;
  return ok();
}

Result<void> Qcow2Image::flush_metadata() {
  if (!metadata_dirty_ && pending_frees_.empty() && !refcounts_->has_dirty()) return ok();
  // Step 2: refcounts and tables nothing on disk points to yet.
  HV_TRY(refcounts_->write_dirty());
  HV_TRY(l2_cache_->write_dirty(true));
  HV_TRY(file_->flush());
  // Step 3: the tables that make the new clusters reachable.
  HV_TRY(l2_cache_->write_dirty(false));
  HV_TRY(write_l1());
  HV_TRY(file_->flush());
  l2_cache_->clear_fresh();
  metadata_dirty_ = false;
  // Step 4: clusters no longer referenced by anything on disk. Not while
  // direct-path I/O mapped earlier may still land in them: they stay pending.
  if (async_inflight_.load() > 0) return ok();
  std::vector<uint64_t> frees;
  frees.swap(pending_frees_);
  for (uint64_t c : frees) {
    HV_TRY(refcounts_->add(c, -1));
    uint64_t rc = HV_TRY(refcounts_->get(c));
    if (rc == 0) {
      l2_cache_->forget(c * cluster_size_);
      if (compressed_tail_ / cluster_size_ == c) compressed_tail_ = 0;
    }
  }
  return ok();
}

Result<void> Qcow2Image::flush() {
  std::lock_guard lock(mutex_);
  if (read_only()) return ok();
  // Its metadata was written when it was marked; nothing more may be.
  if (corrupt_) return file_->flush();
  bool had_metadata = metadata_dirty_ || !pending_frees_.empty() || refcounts_->has_dirty();
  HV_TRY(flush_metadata());
  // flush_metadata() ends with a flush; without metadata changes the data still needs one.
  if (!had_metadata) HV_TRY(file_->flush());
  return ok();
}

void Qcow2Image::trim_backing_tables() {
  // Down the chain, in the order readv takes the images' locks.
  for (Qcow2Image* image = backing_qcow2_; image != nullptr; image = image->backing_qcow2_) {
    if (!budget_.l2->over() && !budget_.refcounts->over()) return;
    std::lock_guard lock(image->mutex_);
    image->l2_cache_->trim();
    image->refcounts_->trim();
  }
}

void Qcow2Image::trim_clean_tables() {
  if (!budget_.l2->over() && !budget_.refcounts->over()) return;
  trim_backing_tables();
  l2_cache_->trim();
  refcounts_->trim();
}

Result<void> Qcow2Image::maybe_trim_caches() {
  // The backing images' tables go first: dropping them needs no write, so
  // the flush below happens only when this image's own tables are too many.
  trim_backing_tables();
  if (!l2_cache_->over_capacity() && !refcounts_->over_capacity()) return ok();
  HV_TRY(flush_metadata());
  HV_TRY(refcounts_->write_dirty());
  l2_cache_->trim();
  refcounts_->trim();
  return ok();
}

Result<void> Qcow2Image::write_compressed(uint64_t cluster_offset, const uint8_t* data) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  HV_TRY(check_range(cluster_offset, std::min<uint64_t>(cluster_size_, header_.size - cluster_offset)));
  if (cluster_offset % cluster_size_ != 0)
    return Error(ErrorCode::kInvalidArgument, "compressed write not cluster-aligned");
  std::vector<uint8_t> out(cluster_size_);
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Error(ErrorCode::kInternal, "zlib deflateInit2 failed");
  }
  z.next_in = const_cast<uint8_t*>(data);
  z.avail_in = static_cast<uInt>(cluster_size_);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  uint64_t clen = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END || clen + 512 >= cluster_size_) {
    // Incompressible: store it as an ordinary cluster.
    iovec v{const_cast<uint8_t*>(data), cluster_size_};
    return write_locked(cluster_offset, {&v, 1});
  }
  // Pack into the current compressed cluster when it fits, else start a new one.
  uint64_t at = compressed_tail_;
  if (at == 0 || (at % cluster_size_) + clen > cluster_size_ || at % cluster_size_ == 0) {
    at = HV_TRY(refcounts_->allocate(1));
  } else {
    HV_TRY(refcounts_->add(at / cluster_size_, 1));
  }
  HV_TRY(file_->write(at, out.data(), clen));
  uint64_t next = (at + clen + 511) / 512 * 512;
  compressed_tail_ = next % cluster_size_ == 0 ? 0 : next;
  TableCache::Table* t = HV_TRY(l2_for_write(cluster_offset));
  uint64_t idx = (cluster_offset >> header_.cluster_bits) & ((1ULL << l2_bits_) - 1);
  Mapping old = HV_TRY(classify(t->entry(idx), cluster_offset));
  HV_TRY(defer_free(old));
  t->set_entry(idx, encode_compressed(at, clen, header_.cluster_bits));
  metadata_dirty_ = true;
  return maybe_trim_caches();
}

Result<void> Qcow2Image::resize(uint64_t new_size) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  if (new_size < header_.size) {
    return Error(ErrorCode::kUnsupported, "shrinking a qcow2 image is not supported (current size " +
                                              std::to_string(header_.size) + " bytes); only growing");
  }
  uint64_t need = l1_entries_for(new_size, header_.cluster_bits);
  if (need * 8 > kMaxL1Bytes) return Error(ErrorCode::kInvalidArgument, "new size is too large for this cluster size");
  HV_TRY(flush_metadata());
  if (need > l1_.size()) {
    std::vector<uint64_t> larger = l1_;
    larger.resize(need, 0);
    HV_TRY(move_l1(std::move(larger), new_size));
    return flush_metadata();
  }
  header_.size = new_size;
  HV_TRY(write_header());
  return file_->flush();
}

Result<void> Qcow2Image::set_backing_file(const std::string& name, const std::string& format) {
  std::lock_guard lock(mutex_);
  HV_TRY(require_writable());
  HV_TRY(flush_metadata());
  header_.backing_file = name;
  header_.backing_format = format;
  HV_TRY(write_header());
  return file_->flush();
}

struct Qcow2Image::AsyncOp {
  BlockCompletion done;
  size_t remaining = 0;
  Result<void> result = ok();
  std::vector<std::vector<iovec>> iovs;  // kept alive until the host I/Os finish
};

void Qcow2Image::ensure_async_engine() {
  if (async_engine_) return;
  auto e = create_io_engine(EngineKind::kAuto, 128);
  if (e.ok()) {
    async_engine_ = std::move(e).value();
    set_worker_notify_fd(async_engine_->notify_fd());
  }
}

int Qcow2Image::notify_fd() {
  ensure_async_engine();
  return async_engine_ ? async_engine_->notify_fd() : BlockDevice::notify_fd();
}

size_t Qcow2Image::requests_in_flight() const {
  return direct_requests_ + held_flushes_.size() + parked_.size() + BlockDevice::requests_in_flight();
}

void Qcow2Image::complete_now(BlockCompletion done, Result<void> result) {
  ready_.emplace_back(std::move(done), std::move(result));
  ++direct_requests_;
  uint64_t one = 1;
  if (async_engine_) [[maybe_unused]]
    ssize_t w = ::write(async_engine_->notify_fd(), &one, sizeof(one));
}

Qcow2Image::Plan Qcow2Image::plan_direct(const BlockRequest& r,
                                         std::vector<std::pair<uint64_t, std::vector<iovec>>>* pieces,
                                         std::optional<DirectAllocation>* allocation) {
  // Never wait here for the lock.
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return Plan::kBusy;
  size_t len = iov_bytes(r.iov);
  if (!check_range(r.offset, len).ok()) return Plan::kWorker;  // the worker reports the error
  bool is_write = r.op == BlockOp::kWrite;
  if (is_write && (read_only() || corrupt_)) return Plan::kWorker;
  std::vector<iovec> zero_fill;
  size_t pos = 0;
  while (pos < len) {
    uint64_t guest = r.offset + pos;
    // Cached tables only: reading one is the worker's job.
    auto cached = lookup_cached(guest);
    if (!cached || !cached->ok()) return Plan::kWorker;
    const Result<Mapping>& m = *cached;
    uint64_t in = guest & (cluster_size_ - 1);
    uint64_t chunk = std::min<uint64_t>(len - pos, cluster_size_ - in);
    if (m->kind == Kind::kNormal && (!is_write || (m->entry & kFlagCopied))) {
      uint64_t host = m->host + in;
      // The worker refuses it and marks the image corrupt.
      if (is_write && metadata_->overlaps(host, chunk)) return Plan::kWorker;
      if (!pieces->empty() && pieces->back().first + iov_bytes(pieces->back().second) == host) {
        for (const auto& v : iov_slice(r.iov, pos, chunk)) pieces->back().second.push_back(v);
      } else {
        pieces->emplace_back(host, iov_slice(r.iov, pos, chunk));
      }
    } else if (!is_write && (m->kind == Kind::kZero || (m->kind == Kind::kUnallocated && !backing_))) {
      for (const auto& v : iov_slice(r.iov, pos, chunk)) zero_fill.push_back(v);
    } else if (is_write && pos == 0) {
      return plan_allocation(r, pieces, allocation);
    } else {
      return Plan::kWorker;
    }
    pos += chunk;
  }
  for (const auto& p : *pieces) {
    if (!file_->direct_ok(p.first, p.second) || p.second.size() > IOV_MAX) return Plan::kWorker;
  }
  iov_fill_zero(zero_fill);
  async_inflight_ += pieces->size();
  return Plan::kDirect;
}

Qcow2Image::Plan Qcow2Image::plan_allocation(const BlockRequest& r,
                                             std::vector<std::pair<uint64_t, std::vector<iovec>>>* pieces,
                                             std::optional<DirectAllocation>* allocation) {
  const uint64_t cmask = cluster_size_ - 1;
  size_t len = iov_bytes(r.iov);
  uint64_t first = r.offset & ~cmask;
  uint64_t n = ((r.offset + len - 1) & ~cmask) - first + cluster_size_;
  n /= cluster_size_;
  uint64_t l1_index = first >> (header_.cluster_bits + l2_bits_);
  // One L2 table, already cached and ours alone (COPIED), so linking needs no copy.
  if (n > kMaxAllocationRun || ((first + (n - 1) * cluster_size_) >> (header_.cluster_bits + l2_bits_)) != l1_index ||
      !(l1_[l1_index] & kFlagCopied) || l2_cache_->over_capacity() || refcounts_->over_capacity() ||
      !refcounts_->allocates_in_memory(n)) {
    return Plan::kWorker;
  }
  TableCache::Table* t = l2_cache_->find(l1_[l1_index] & kOffsetMask);
  if (t == nullptr) return Plan::kWorker;
  uint64_t idx = (first >> header_.cluster_bits) & ((1ULL << l2_bits_) - 1);
  for (uint64_t i = 0; i < n; ++i) {
    auto m = classify(t->entry(idx + i), first + i * cluster_size_);
    // Only clusters that read as zeros: the parts the write leaves out need no copy.
    bool zeros = m.ok() && ((m->kind == Kind::kZero && m->host == 0) ||
                            (m->kind == Kind::kUnallocated && (!backing_ || first >= backing_->virtual_size())));
    if (!zeros) return Plan::kWorker;
  }
  uint64_t host = 0;
  if (auto got = refcounts_->allocate(n); got.ok()) {
    host = *got;
  } else {
    return Plan::kWorker;  // the worker meets the same error and reports it
  }
  uint64_t at = host + (r.offset - first);
  // Space never written reads as zeros, so only the guest's bytes are written.
  if (host < file_->untouched_from() || !file_->direct_ok(at, r.iov) || r.iov.size() > IOV_MAX) {
    for (uint64_t i = 0; i < n; ++i) (void)refcounts_->add(host / cluster_size_ + i, -1);
    return Plan::kWorker;
  }
  file_->note_write(at, len);
  pieces->emplace_back(at, r.iov);
  *allocation = DirectAllocation{first, n, host};
  ++async_inflight_;
  return Plan::kDirect;
}

Result<void> Qcow2Image::link_allocation(const DirectAllocation& a, bool written) {
  // Waits for the lock (a worker request may hold it): linking must not be lost.
  std::lock_guard lock(mutex_);
  if (!written || corrupt_) {
    // Nothing points at the clusters: they are free again at once.
    for (uint64_t i = 0; i < a.clusters; ++i) HV_TRY(refcounts_->add(a.host / cluster_size_ + i, -1));
    return ok();
  }
  TableCache::Table* t = HV_TRY(l2_for_write(a.guest));
  uint64_t idx = (a.guest >> header_.cluster_bits) & ((1ULL << l2_bits_) - 1);
  for (uint64_t i = 0; i < a.clusters; ++i) {
    Mapping old = HV_TRY(classify(t->entry(idx + i), a.guest + i * cluster_size_));
    HV_TRY(defer_free(old));
    t->set_entry(idx + i, (a.host + i * cluster_size_) | kFlagCopied);
  }
  metadata_dirty_ = true;
  return ok();
}

void Qcow2Image::submit(BlockRequest request, BlockCompletion done) {
  ensure_async_engine();
  // Behind parked requests, to keep submission order.
  if (parked_.empty() && try_submit(request, done)) return;
  parked_.push_back(Parked{std::move(request), std::move(done)});
}

void Qcow2Image::retry_parked() {
  while (!parked_.empty()) {
    Parked& p = parked_.front();
    if (!try_submit(p.request, p.done)) return;
    parked_.pop_front();
  }
}

bool Qcow2Image::try_submit(BlockRequest& request, BlockCompletion& done) {
  std::vector<std::pair<uint64_t, std::vector<iovec>>> pieces;
  std::optional<DirectAllocation> allocation;
  if (request.op == BlockOp::kFlush && !direct_seqs_.empty()) {
    held_flushes_.push_back(HeldFlush{next_direct_seq_, std::move(request), std::move(done)});
    return true;
  }
  // A request touching a cluster that a request still on the worker touches
  // goes to the worker behind it, so it never overtakes it (a read after an
  // allocating write sees the write). Others may go direct meanwhile: a
  // cache miss sends one request to the worker without taking every later
  // one with it.
  const uint64_t cmask = cluster_size_ - 1;
  uint64_t len =
      request.op == BlockOp::kRead || request.op == BlockOp::kWrite ? iov_bytes(request.iov) : request.length;
  uint64_t lo = request.offset & ~cmask;
  // Saturates instead of wrapping; an out-of-range request is the worker's to refuse.
  uint64_t hi = request.offset + len < request.offset ? UINT64_MAX : ((request.offset + len + cmask) & ~cmask);
  if (hi < lo) hi = UINT64_MAX;
  auto touches = [&](const auto& ranges) {
    return std::any_of(ranges.begin(), ranges.end(),
                       [&](const auto& w) { return lo < w.second.second && w.second.first < hi; });
  };
  // Not linked yet: anything else there (on either path) would see the
  // clusters unallocated. Parked until the allocation's completion.
  if (request.op != BlockOp::kFlush && touches(allocating_ranges_)) return false;
  bool behind_worker = touches(worker_ranges_);
  Plan plan = Plan::kWorker;
  if (async_engine_ && (request.op == BlockOp::kRead || request.op == BlockOp::kWrite) && !behind_worker) {
    plan = plan_direct(request, &pieces, &allocation);
  }
  // The lock is busy. If our worker is running, it signals when it finishes
  // a request and the poll retries; parking keeps the worker from taking
  // every request submitted while it is busy. Otherwise another thread's
  // synchronous call holds it, and the worker will wait for it instead of us.
  if (plan == Plan::kBusy && BlockDevice::requests_in_flight() > 0) return false;
  if (plan != Plan::kDirect) {
    uint64_t id = next_worker_id_++;
    if (request.op != BlockOp::kFlush) worker_ranges_.emplace(id, std::make_pair(lo, hi));
    BlockDevice::submit(std::move(request), [this, id, done = std::move(done)](Result<void> r) {
      worker_ranges_.erase(id);
      done(std::move(r));
    });
    return true;
  }
  if (pieces.empty()) {
    complete_now(std::move(done), ok());
    return true;
  }
  auto op = std::make_shared<AsyncOp>();
  op->done = std::move(done);
  op->remaining = pieces.size();
  ++direct_requests_;
  uint64_t seq = next_direct_seq_++;
  direct_seqs_.insert(seq);
  if (allocation) {
    allocating_ranges_.emplace(
        seq, std::make_pair(allocation->guest, allocation->guest + allocation->clusters * cluster_size_));
  }
  bool is_write = request.op == BlockOp::kWrite;
  for (auto& [host, iov] : pieces) {
    op->iovs.push_back(std::move(iov));
    const std::vector<iovec>& v = op->iovs.back();
    size_t expect = iov_bytes(v);
    IoRequest io{is_write ? IoOp::kWrite : IoOp::kRead, file_->fd(), host, v.data(), static_cast<int>(v.size()), 0};
    async_engine_->submit(io, [this, op, expect, vi = op->iovs.size() - 1, is_write, host = host, seq,
                               allocation](int64_t n) {
      --async_inflight_;
      if (n < 0) {
        op->result =
            Error::from_errno(file_->path() + ": I/O at host offset " + std::to_string(host), static_cast<int>(-n));
      } else if (static_cast<size_t>(n) < expect) {
        // A read past the end of the file (the last cluster may be short) reads zeros.
        if (is_write) {
          op->result = Error(ErrorCode::kIo, file_->path() + ": short write at host offset " + std::to_string(host));
        } else {
          iov_fill_zero(iov_slice(op->iovs[vi], static_cast<size_t>(n), expect - static_cast<size_t>(n)));
        }
      }
      if (--op->remaining == 0) {
        if (allocation) {
          auto linked = link_allocation(*allocation, op->result.ok());
          if (op->result.ok() && !linked.ok()) op->result = linked.error();
          allocating_ranges_.erase(seq);
        }
        --direct_requests_;
        ++delivered_;
        direct_seqs_.erase(seq);
        op->done(std::move(op->result));
        release_flushes();
      }
    });
  }
  return true;
}

void Qcow2Image::release_flushes() {
  while (!held_flushes_.empty() && (direct_seqs_.empty() || *direct_seqs_.begin() >= held_flushes_.front().after)) {
    HeldFlush f = std::move(held_flushes_.front());
    held_flushes_.pop_front();
    // The worker runs it after whatever it already has queued.
    BlockDevice::submit(std::move(f.request), std::move(f.done));
  }
}

void Qcow2Image::poll_completions(bool wait) {
  for (;;) {
    uint64_t counter = 0;
    int efd = async_engine_ ? async_engine_->notify_fd() : -1;
    if (efd >= 0) [[maybe_unused]]
      ssize_t r = ::read(efd, &counter, sizeof counter);
    size_t before = delivered_;
    if (!ready_.empty()) {
      auto ready = std::move(ready_);
      ready_.clear();
      direct_requests_ -= ready.size();
      delivered_ += ready.size();
      for (auto& [done, result] : ready) done(std::move(result));
    }
    if (async_engine_) async_engine_->reap(false);
    size_t delivered = (delivered_ - before) + poll_worker(false);
    retry_parked();
    if (delivered > 0 || !wait || requests_in_flight() == 0) return;
    if (efd < 0) {
      poll_worker(true);
      return;
    }
    pollfd p{efd, POLLIN, 0};
    ::poll(&p, 1, 100);
  }
}

}  // namespace hostvisor::block
