// The qcow2 on-disk format (versions 2 and 3, as specified in QEMU's
// docs/interop/qcow2.txt): header, header extensions, table entry layouts and
// the snapshot table. Parsing validates everything against the file size and
// the format's limits so that later code can trust the numbers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::block::qcow2 {

constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr uint32_t kMinClusterBits = 9;
constexpr uint32_t kMaxClusterBits = 21;
constexpr uint32_t kDefaultClusterBits = 16;
constexpr uint32_t kDefaultRefcountOrder = 4;  // 16-bit refcounts
constexpr uint32_t kV3HeaderLength = 104;
// Offsets in tables are 56-bit (bits 9..55); anything larger is corruption.
constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ULL;
constexpr uint64_t kMaxOffset = 1ULL << 56;

// L1 and L2 entry flags.
constexpr uint64_t kFlagCopied = 1ULL << 63;      // refcount is exactly 1: writable in place
constexpr uint64_t kFlagCompressed = 1ULL << 62;  // L2: compressed cluster
constexpr uint64_t kFlagZero = 1ULL;              // L2 (v3): reads as zeros

// Incompatible feature bits.
constexpr uint64_t kIncompatDirty = 1ULL << 0;
constexpr uint64_t kIncompatCorrupt = 1ULL << 1;
constexpr uint64_t kIncompatExternalData = 1ULL << 2;
constexpr uint64_t kIncompatCompressionType = 1ULL << 3;
constexpr uint64_t kIncompatExtendedL2 = 1ULL << 4;
// Compatible feature bits.
constexpr uint64_t kCompatLazyRefcounts = 1ULL << 0;

// Header extension types.
constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtBackingFormat = 0xe2792aca;
constexpr uint32_t kExtFeatureTable = 0x6803f857;

// Limits that keep a hostile header from making us allocate absurd amounts.
constexpr uint64_t kMaxL1Bytes = 32ULL << 20;
constexpr uint64_t kMaxRefcountTableBytes = 8ULL << 20;
constexpr uint32_t kMaxSnapshots = 65536;
constexpr uint64_t kMaxSnapshotTableBytes = 64ULL << 20;
constexpr uint32_t kMaxBackingNameBytes = 1023;

struct Header {
  uint32_t version = 3;
  uint64_t backing_file_offset = 0;
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = kDefaultClusterBits;
  uint64_t size = 0;
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = kDefaultRefcountOrder;
  uint32_t header_length = kV3HeaderLength;

  // From the header and its extensions.
  std::string backing_file;
  std::string backing_format;
  // Extensions we do not interpret, kept verbatim so rewriting the header keeps them.
  struct Extension {
    uint32_t type;
    std::vector<uint8_t> data;
  };
  std::vector<Extension> unknown_extensions;

  uint64_t cluster_size() const { return 1ULL << cluster_bits; }
  uint64_t l2_entries() const { return cluster_size() / 8; }
  uint32_t refcount_bits() const { return 1U << refcount_order; }
};

// Parses and validates the header cluster (the first cluster of the file, or
// fewer bytes if the file is shorter). file_size bounds table offsets.
Result<Header> parse_header(std::span<const uint8_t> bytes, uint64_t file_size);

// Serializes the header, extensions and backing file name into one cluster.
Result<std::vector<uint8_t>> serialize_header(const Header& header);

// Number of L1 entries needed for a virtual size.
uint64_t l1_entries_for(uint64_t virtual_size, uint32_t cluster_bits);

// Compressed-cluster L2 entry layout.
struct CompressedExtent {
  uint64_t offset;  // byte offset of the compressed data in the file
  uint64_t length;  // bytes to read (covers the data; may include trailing padding)
};
CompressedExtent decode_compressed(uint64_t entry, uint32_t cluster_bits);
uint64_t encode_compressed(uint64_t offset, uint64_t length, uint32_t cluster_bits);

// One internal snapshot.
struct Snapshot {
  uint64_t l1_table_offset = 0;
  uint32_t l1_size = 0;
  std::string id;
  std::string name;
  uint32_t date_sec = 0;
  uint32_t date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  uint64_t vm_state_size = 0;
  uint64_t disk_size = 0;
  std::optional<uint64_t> icount;
  std::vector<uint8_t> extra_unknown;  // extra data beyond what we interpret
};

Result<std::vector<Snapshot>> parse_snapshot_table(std::span<const uint8_t> bytes, uint32_t count, const Header& header,
                                                   uint64_t file_size);
std::vector<uint8_t> serialize_snapshot_table(const std::vector<Snapshot>& snapshots);

// Big-endian helpers.
inline uint64_t load_be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline void store_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void store_be32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
inline void store_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

}  // namespace hostvisor::block::qcow2
