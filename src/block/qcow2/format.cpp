#include "block/qcow2/format.h"

#include <cstring>

namespace hostvisor::block::qcow2 {

namespace {

Error corrupt(const std::string& what) { return Error(ErrorCode::kCorrupt, "corrupt qcow2 header: " + what); }

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// A table of `bytes` at `offset` must be cluster-aligned and end inside the file.
Result<void> check_table(const char* name, uint64_t offset, uint64_t bytes, const Header& h, uint64_t file_size) {
  if (offset % h.cluster_size() != 0) {
    return corrupt(std::string(name) + " offset " + hex(offset) + " is not aligned to the cluster size");
  }
  if (offset >= kMaxOffset || bytes > kMaxOffset - offset || offset + bytes > file_size) {
    return corrupt(std::string(name) + " at " + hex(offset) + " (" + std::to_string(bytes) +
                   " bytes) lies outside the file (" + std::to_string(file_size) + " bytes)");
  }
  if (bytes > 0 && offset == 0) return corrupt(std::string(name) + " overlaps the header at offset 0");
  return ok();
}

}  // namespace

uint64_t l1_entries_for(uint64_t virtual_size, uint32_t cluster_bits) {
  uint64_t l2_span = (1ULL << cluster_bits) * ((1ULL << cluster_bits) / 8);
  return (virtual_size + l2_span - 1) / l2_span;
}

Result<Header> parse_header(std::span<const uint8_t> b, uint64_t file_size) {
  if (b.size() < 72) return corrupt("file is too short for a qcow2 header (" + std::to_string(b.size()) + " bytes)");
  if (load_be32(&b[0]) != kMagic) return corrupt("bad magic, not a qcow2 image");
  Header h;
  h.version = load_be32(&b[4]);
  if (h.version != 2 && h.version != 3) {
    return Error(ErrorCode::kUnsupported, "qcow2 version " + std::to_string(h.version) + " is not supported (2 or 3)");
  }
  h.backing_file_offset = load_be64(&b[8]);
  h.backing_file_size = load_be32(&b[16]);
  h.cluster_bits = load_be32(&b[20]);
  h.size = load_be64(&b[24]);
  h.crypt_method = load_be32(&b[32]);
  h.l1_size = load_be32(&b[36]);
  h.l1_table_offset = load_be64(&b[40]);
  h.refcount_table_offset = load_be64(&b[48]);
  h.refcount_table_clusters = load_be32(&b[56]);
  h.nb_snapshots = load_be32(&b[60]);
  h.snapshots_offset = load_be64(&b[64]);
  if (h.version == 2) {
    h.header_length = 72;
    h.refcount_order = 4;
  } else {
    if (b.size() < kV3HeaderLength) return corrupt("file is too short for a version 3 header");
    h.incompatible_features = load_be64(&b[72]);
    h.compatible_features = load_be64(&b[80]);
    h.autoclear_features = load_be64(&b[88]);
    h.refcount_order = load_be32(&b[96]);
    h.header_length = load_be32(&b[100]);
    if (h.header_length < kV3HeaderLength || h.header_length % 8 != 0) {
      return corrupt("header length " + std::to_string(h.header_length) + " is invalid");
    }
  }
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits) {
    return corrupt("cluster_bits " + std::to_string(h.cluster_bits) + " is out of range (9..21)");
  }
  if (h.header_length > h.cluster_size() || h.header_length > b.size()) {
    return corrupt("header length " + std::to_string(h.header_length) + " exceeds the first cluster");
  }
  if (h.refcount_order > 6) return corrupt("refcount_order " + std::to_string(h.refcount_order) + " is above 6");
  if (h.crypt_method != 0) {
    return Error(ErrorCode::kUnsupported,
                 "encrypted qcow2 images are not supported (crypt_method " + std::to_string(h.crypt_method) + ")");
  }
  uint64_t incompat = h.incompatible_features;
  if (incompat & kIncompatCorrupt) {
    return Error(ErrorCode::kCorrupt, "the image is marked corrupt; run `hostvisor disk check --repair` first");
  }
  if (incompat & kIncompatExternalData) {
    return Error(ErrorCode::kUnsupported, "qcow2 images with an external data file are not supported");
  }
  if (incompat & kIncompatExtendedL2) {
    return Error(ErrorCode::kUnsupported, "qcow2 images with extended L2 entries (subclusters) are not supported");
  }
  if (incompat & kIncompatCompressionType) {
    uint8_t type = h.header_length > 104 ? b[104] : 0;
    if (type != 0) {
      return Error(ErrorCode::kUnsupported,
                   "qcow2 compression type " + std::to_string(type) + " (zstd) is not supported; only zlib");
    }
  }
  uint64_t unknown = incompat & ~(kIncompatDirty | kIncompatCompressionType);
  if (unknown != 0) {
    return Error(ErrorCode::kUnsupported, "qcow2 image uses unknown incompatible features " + hex(unknown));
  }
  // Sizes: the L1 table must cover the virtual size, and nothing may be absurd.
  uint64_t cs = h.cluster_size();
  if (h.size > (1ULL << 62)) return corrupt("virtual size " + std::to_string(h.size) + " is too large");
  uint64_t needed_l1 = l1_entries_for(h.size, h.cluster_bits);
  if (h.l1_size < needed_l1) {
    return corrupt("L1 table has " + std::to_string(h.l1_size) + " entries but the virtual size needs " +
                   std::to_string(needed_l1));
  }
  if (uint64_t{h.l1_size} * 8 > kMaxL1Bytes) {
    return corrupt("L1 table size " + std::to_string(h.l1_size) + " entries is larger than supported");
  }
  HV_TRY(check_table("L1 table", h.l1_table_offset, uint64_t{h.l1_size} * 8, h, file_size));
  if (h.refcount_table_clusters == 0) return corrupt("refcount table has zero clusters");
  if (uint64_t{h.refcount_table_clusters} * cs > kMaxRefcountTableBytes) {
    return corrupt("refcount table of " + std::to_string(h.refcount_table_clusters) + " clusters is out of range");
  }
  HV_TRY(
      check_table("refcount table", h.refcount_table_offset, uint64_t{h.refcount_table_clusters} * cs, h, file_size));
  if (h.nb_snapshots > kMaxSnapshots) {
    return corrupt("snapshot count " + std::to_string(h.nb_snapshots) + " is out of range");
  }
  if (h.nb_snapshots > 0) {
    // The table's exact length is found while parsing it; here only its start.
    HV_TRY(check_table("snapshot table", h.snapshots_offset, 40, h, file_size));
  }
  // Backing file name.
  if (h.backing_file_offset != 0) {
    if (h.backing_file_size == 0 || h.backing_file_size > kMaxBackingNameBytes) {
      return corrupt("backing file name length " + std::to_string(h.backing_file_size) + " is out of range");
    }
    if (h.backing_file_offset > b.size() || h.backing_file_size > b.size() - h.backing_file_offset) {
      return corrupt("backing file name at " + hex(h.backing_file_offset) + " lies outside the first cluster");
    }
    h.backing_file.assign(reinterpret_cast<const char*>(&b[h.backing_file_offset]), h.backing_file_size);
    if (h.backing_file.find('\0') != std::string::npos) return corrupt("backing file name contains a NUL byte");
  }
  // Header extensions (version 3, and version 2 images written by newer tools).
  uint64_t end = h.backing_file_offset != 0 ? h.backing_file_offset : b.size();
  uint64_t pos = h.header_length;
  while (pos + 8 <= end) {
    uint32_t type = load_be32(&b[pos]);
    uint32_t len = load_be32(&b[pos + 4]);
    pos += 8;
    if (type == kExtEnd) break;
    if (len > end - pos) return corrupt("header extension " + hex(type) + " runs past the header area");
    std::span<const uint8_t> data = b.subspan(pos, len);
    if (type == kExtBackingFormat) {
      h.backing_format.assign(data.begin(), data.end());
      auto nul = h.backing_format.find('\0');
      if (nul != std::string::npos) h.backing_format.resize(nul);
    } else if (type == kExtFeatureTable) {
      // Names for feature bits; informative only and regenerated on rewrite.
    } else {
      h.unknown_extensions.push_back({type, std::vector<uint8_t>(data.begin(), data.end())});
    }
    pos += (uint64_t{len} + 7) / 8 * 8;
  }
  return h;
}

Result<std::vector<uint8_t>> serialize_header(const Header& h) {
  std::vector<uint8_t> b(h.cluster_size(), 0);
  store_be32(&b[0], kMagic);
  store_be32(&b[4], h.version);
  store_be32(&b[20], h.cluster_bits);
  store_be64(&b[24], h.size);
  store_be32(&b[32], h.crypt_method);
  store_be32(&b[36], h.l1_size);
  store_be64(&b[40], h.l1_table_offset);
  store_be64(&b[48], h.refcount_table_offset);
  store_be32(&b[56], h.refcount_table_clusters);
  store_be32(&b[60], h.nb_snapshots);
  store_be64(&b[64], h.snapshots_offset);
  uint64_t pos = 72;
  if (h.version >= 3) {
    store_be64(&b[72], h.incompatible_features);
    store_be64(&b[80], h.compatible_features);
    store_be64(&b[88], h.autoclear_features);
    store_be32(&b[96], h.refcount_order);
    // A 112-byte header carries the compression type byte (0 = zlib) in its padding.
    store_be32(&b[100], 112);
    pos = 112;
  }
  auto put_ext = [&](uint32_t type, const uint8_t* data, size_t len) -> bool {
    uint64_t padded = (len + 7) / 8 * 8;
    if (pos + 8 + padded + 8 > b.size()) return false;
    store_be32(&b[pos], type);
    store_be32(&b[pos + 4], static_cast<uint32_t>(len));
    if (len) std::memcpy(&b[pos + 8], data, len);
    pos += 8 + padded;
    return true;
  };
  bool fits = true;
  if (!h.backing_format.empty()) {
    fits &=
        put_ext(kExtBackingFormat, reinterpret_cast<const uint8_t*>(h.backing_format.data()), h.backing_format.size());
  }
  for (const auto& ext : h.unknown_extensions) fits &= put_ext(ext.type, ext.data.data(), ext.data.size());
  if (h.version >= 3) {
    // Feature name table: lets qemu-img and others name the bits we set.
    struct Name {
      uint8_t type, bit;
      const char* name;
    };
    const Name names[] = {
        {0, 0, "dirty bit"}, {0, 1, "corrupt bit"}, {0, 3, "compression type"}, {1, 0, "lazy refcounts"}};
    std::vector<uint8_t> table(sizeof(names) / sizeof(names[0]) * 48, 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
      table[i * 48] = names[i].type;
      table[i * 48 + 1] = names[i].bit;
      std::memcpy(&table[i * 48 + 2], names[i].name, std::strlen(names[i].name));
    }
    // Optional: dropped silently when the cluster is too small to hold it.
    if (pos + 8 + table.size() + 8 + 8 + h.backing_file.size() <= b.size()) {
      put_ext(kExtFeatureTable, table.data(), table.size());
    }
  }
  if (!fits) return Error(ErrorCode::kOutOfRange, "qcow2 header extensions do not fit in the first cluster");
  pos += 8;  // end-of-extensions marker (already zero)
  if (!h.backing_file.empty()) {
    if (h.backing_file.size() > kMaxBackingNameBytes || pos + h.backing_file.size() > b.size()) {
      return Error(ErrorCode::kOutOfRange, "backing file name is too long for the qcow2 header");
    }
    std::memcpy(&b[pos], h.backing_file.data(), h.backing_file.size());
    store_be64(&b[8], pos);
    store_be32(&b[16], static_cast<uint32_t>(h.backing_file.size()));
  }
  return b;
}

CompressedExtent decode_compressed(uint64_t entry, uint32_t cluster_bits) {
  uint32_t x = 62 - (cluster_bits - 8);
  uint64_t offset = entry & ((1ULL << x) - 1);
  uint64_t sectors = ((entry >> x) & ((1ULL << (cluster_bits - 8)) - 1)) + 1;
  return {offset, sectors * 512 - (offset & 511)};
}

uint64_t encode_compressed(uint64_t offset, uint64_t length, uint32_t cluster_bits) {
  uint32_t x = 62 - (cluster_bits - 8);
  uint64_t extra_sectors = ((offset + length - 1) >> 9) - (offset >> 9);
  return kFlagCompressed | (extra_sectors << x) | offset;
}

Result<std::vector<Snapshot>> parse_snapshot_table(std::span<const uint8_t> b, uint32_t count, const Header& h,
                                                   uint64_t file_size) {
  std::vector<Snapshot> out;
  size_t pos = 0;
  for (uint32_t i = 0; i < count; ++i) {
    std::string where = "snapshot table entry " + std::to_string(i);
    if (b.size() < 40 || pos > b.size() - 40)
      return Error(ErrorCode::kCorrupt, where + " runs past the snapshot table");
    Snapshot s;
    s.l1_table_offset = load_be64(&b[pos]);
    s.l1_size = load_be32(&b[pos + 8]);
    uint16_t id_len = load_be16(&b[pos + 12]);
    uint16_t name_len = load_be16(&b[pos + 14]);
    s.date_sec = load_be32(&b[pos + 16]);
    s.date_nsec = load_be32(&b[pos + 20]);
    s.vm_clock_nsec = load_be64(&b[pos + 24]);
    s.vm_state_size = load_be32(&b[pos + 32]);
    uint32_t extra = load_be32(&b[pos + 36]);
    pos += 40;
    if (extra > 1024)
      return Error(ErrorCode::kCorrupt, where + ": extra data size " + std::to_string(extra) + " is out of range");
    if (uint64_t{extra} + id_len + name_len > b.size() - pos) {
      return Error(ErrorCode::kCorrupt, where + " runs past the snapshot table");
    }
    s.disk_size = h.size;
    if (extra >= 8) s.vm_state_size = load_be64(&b[pos]);
    if (extra >= 16) s.disk_size = load_be64(&b[pos + 8]);
    if (extra >= 24) s.icount = load_be64(&b[pos + 16]);
    if (extra > 24) s.extra_unknown.assign(b.begin() + pos + 24, b.begin() + pos + extra);
    pos += extra;
    s.id.assign(reinterpret_cast<const char*>(&b[pos]), id_len);
    pos += id_len;
    s.name.assign(reinterpret_cast<const char*>(&b[pos]), name_len);
    pos += name_len;
    pos = (pos + 7) / 8 * 8;
    if (uint64_t{s.l1_size} * 8 > kMaxL1Bytes) {
      return Error(ErrorCode::kCorrupt, where + ": L1 size " + std::to_string(s.l1_size) + " is out of range");
    }
    if (s.l1_size < l1_entries_for(s.disk_size, h.cluster_bits)) {
      return Error(ErrorCode::kCorrupt, where + ": L1 table is too small for the snapshot's disk size");
    }
    if (s.l1_table_offset % h.cluster_size() != 0 || s.l1_table_offset >= kMaxOffset ||
        s.l1_table_offset + uint64_t{s.l1_size} * 8 > file_size || (s.l1_size > 0 && s.l1_table_offset == 0)) {
      return Error(ErrorCode::kCorrupt, where + ": L1 table offset is misaligned or outside the file");
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<uint8_t> serialize_snapshot_table(const std::vector<Snapshot>& snapshots) {
  std::vector<uint8_t> b;
  for (const auto& s : snapshots) {
    size_t extra = 16 + (s.icount ? 8 : 0) + (s.icount ? s.extra_unknown.size() : 0);
    size_t start = b.size();
    size_t len = 40 + extra + s.id.size() + s.name.size();
    b.resize(start + (len + 7) / 8 * 8, 0);
    uint8_t* p = &b[start];
    store_be64(p, s.l1_table_offset);
    store_be32(p + 8, s.l1_size);
    store_be16(p + 12, static_cast<uint16_t>(s.id.size()));
    store_be16(p + 14, static_cast<uint16_t>(s.name.size()));
    store_be32(p + 16, s.date_sec);
    store_be32(p + 20, s.date_nsec);
    store_be64(p + 24, s.vm_clock_nsec);
    store_be32(p + 32, s.vm_state_size > 0xffffffffULL ? 0 : static_cast<uint32_t>(s.vm_state_size));
    store_be32(p + 36, static_cast<uint32_t>(extra));
    p += 40;
    store_be64(p, s.vm_state_size);
    store_be64(p + 8, s.disk_size);
    if (s.icount) {
      store_be64(p + 16, *s.icount);
      if (!s.extra_unknown.empty()) std::memcpy(p + 24, s.extra_unknown.data(), s.extra_unknown.size());
    }
    p += extra;
    std::memcpy(p, s.id.data(), s.id.size());
    p += s.id.size();
    std::memcpy(p, s.name.data(), s.name.size());
  }
  return b;
}

}  // namespace hostvisor::block::qcow2
