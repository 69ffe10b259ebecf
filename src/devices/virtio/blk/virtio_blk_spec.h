// Numbers and layouts of the virtio block device from the virtio 1.2
// specification (OASIS), section 5.2.
#pragma once

#include <cstdint>

namespace hostvisor::virtio_blk {

// 5.2.3 Feature bits (bit numbers).
inline constexpr unsigned kFeatureSizeMax = 1;
inline constexpr unsigned kFeatureSegMax = 2;
inline constexpr unsigned kFeatureGeometry = 4;
inline constexpr unsigned kFeatureReadOnly = 5;
inline constexpr unsigned kFeatureBlockSize = 6;
inline constexpr unsigned kFeatureFlush = 9;
inline constexpr unsigned kFeatureTopology = 10;
inline constexpr unsigned kFeatureConfigWce = 11;
inline constexpr unsigned kFeatureMultiQueue = 12;
inline constexpr unsigned kFeatureDiscard = 13;
inline constexpr unsigned kFeatureWriteZeroes = 14;

// 5.2.6 request types.
inline constexpr uint32_t kRequestIn = 0;
inline constexpr uint32_t kRequestOut = 1;
inline constexpr uint32_t kRequestFlush = 4;
inline constexpr uint32_t kRequestGetId = 8;
inline constexpr uint32_t kRequestDiscard = 11;
inline constexpr uint32_t kRequestWriteZeroes = 13;

// 5.2.6 status byte values.
inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoError = 1;
inline constexpr uint8_t kStatusUnsupported = 2;

// Sectors in requests are always 512 bytes, whatever blk_size says (5.2.6).
inline constexpr uint64_t kSectorSize = 512;
inline constexpr unsigned kSectorShift = 9;
// The GET_ID answer: up to 20 bytes, NUL-padded when shorter.
inline constexpr uint32_t kIdBytes = 20;

// struct virtio_blk_req's device-readable header.
struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// One segment of a DISCARD or WRITE_ZEROES request.
struct DiscardWriteZeroesSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(DiscardWriteZeroesSegment) == 16);
inline constexpr uint32_t kSegmentFlagUnmap = 1;

// 5.2.4 struct virtio_blk_config (little-endian; packed as laid out).
struct __attribute__((packed)) Config {
  uint64_t capacity;  // in 512-byte sectors
  uint32_t size_max;
  uint32_t seg_max;
  uint16_t geometry_cylinders;
  uint8_t geometry_heads;
  uint8_t geometry_sectors;
  uint32_t blk_size;
  uint8_t physical_block_exp;
  uint8_t alignment_offset;
  uint16_t min_io_size;
  uint32_t opt_io_size;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
  uint32_t max_secure_erase_sectors;
  uint32_t max_secure_erase_seg;
  uint32_t secure_erase_sector_alignment;
};
static_assert(sizeof(Config) == 72);

}  // namespace hostvisor::virtio_blk
