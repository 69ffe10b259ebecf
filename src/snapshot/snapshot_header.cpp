#include "snapshot/snapshot_header.h"

#include <cstring>

#include "base/state_codec.h"
#include "snapshot/crc32c.h"
#include "snapshot/memory_checksums.h"
#include "snapshot/snapshot_format.h"

namespace hostvisor::snapshot {

namespace {

// magic, version, payload length, CRC-32C of the first 16 bytes (the CRC
// field as zero) and the payload.
constexpr size_t kPreambleSize = 20;
constexpr size_t kCrcOffset = 16;

uint32_t header_crc(std::span<const uint8_t> preamble, std::span<const uint8_t> payload) {
  const uint32_t crc = crc32c(preamble.first(kCrcOffset));
  return crc32c(payload, crc);
}

Error corrupt(const std::string& what) { return Error(ErrorCode::kCorrupt, "snapshot header: " + what); }

}  // namespace

std::vector<uint8_t> encode_header(const SnapshotHeader& header) {
  StateWriter payload;
  payload.put_string(kHostvisorVersion);
  payload.put_bytes(header.machine_config);
  payload.put<uint32_t>(static_cast<uint32_t>(header.devices.size()));
  for (const std::string& device : header.devices) payload.put_string(device);
  payload.put<uint32_t>(static_cast<uint32_t>(header.regions.size()));
  for (const MemoryRegionRecord& region : header.regions) {
    payload.put(region.guest_address);
    payload.put(region.size);
    payload.put(region.file_offset);
  }
  payload.put(header.memory_file_size);
  payload.put(header.state_file_size);
  payload.put(header.state_crc);
  payload.put<uint32_t>(static_cast<uint32_t>(header.disks.size()));
  for (const FrozenDisk& disk : header.disks) {
    payload.put(disk.disk_index);
    payload.put_string(disk.file);
    payload.put(disk.size);
    payload.put(disk.mtime_ns);
  }
  payload.put(header.memory_chunk_size);
  payload.put<uint32_t>(static_cast<uint32_t>(header.memory_crcs.size()));
  for (uint32_t crc : header.memory_crcs) payload.put(crc);

  StateWriter file;
  file.put_raw(kHeaderMagic);
  file.put(kFormatVersion);
  file.put(static_cast<uint32_t>(payload.bytes().size()));
  file.put<uint32_t>(0);
  std::vector<uint8_t> bytes = file.take();
  const uint32_t crc = header_crc(bytes, payload.bytes());
  std::memcpy(bytes.data() + kCrcOffset, &crc, sizeof crc);
  bytes.insert(bytes.end(), payload.bytes().begin(), payload.bytes().end());
  return bytes;
}

Result<SnapshotHeader> decode_header(std::span<const uint8_t> file) {
  if (file.size() < sizeof kHeaderMagic || std::memcmp(file.data(), kHeaderMagic, sizeof kHeaderMagic) != 0)
    return Error(ErrorCode::kCorrupt, "not a hostvisor snapshot (the header file does not start with its magic)");
  if (file.size() < kPreambleSize)
    return corrupt("truncated: " + std::to_string(file.size()) + " bytes, shorter than its fixed part");
  uint32_t version, length, crc;
  std::memcpy(&version, file.data() + 8, 4);
  std::memcpy(&length, file.data() + 12, 4);
  std::memcpy(&crc, file.data() + kCrcOffset, 4);
  if (version > kFormatVersion)
    return Error(ErrorCode::kUnsupported, "snapshot format version " + std::to_string(version) +
                                              " was written by a newer hostvisor; this one reads versions " +
                                              std::to_string(kOldestReadableFormatVersion) + " to " +
                                              std::to_string(kFormatVersion));
  if (version < kOldestReadableFormatVersion)
    return Error(ErrorCode::kUnsupported, "snapshot format version " + std::to_string(version) +
                                              " is no longer supported; this hostvisor reads versions " +
                                              std::to_string(kOldestReadableFormatVersion) + " to " +
                                              std::to_string(kFormatVersion));
  if (length > kMaxHeaderPayload) return corrupt("payload length " + std::to_string(length) + " is implausible");
  if (file.size() - kPreambleSize < length)
    return corrupt("truncated: " + std::to_string(file.size()) + " bytes, " + std::to_string(kPreambleSize + length) +
                   " expected");
  if (file.size() - kPreambleSize > length)
    return corrupt(std::to_string(file.size() - kPreambleSize - length) + " bytes of trailing garbage");
  const auto payload = file.subspan(kPreambleSize, length);
  if (header_crc(file, payload) != crc) return corrupt("checksum mismatch (the file was changed or damaged)");

  StateReader in(payload, "snapshot header");
  SnapshotHeader header;
  header.format_version = version;
  header.hostvisor_version = in.get_string(256);
  header.machine_config = in.get_bytes(kMaxHeaderPayload);
  const uint32_t devices = in.get<uint32_t>();
  if (devices > kMaxDevices) in.fail(std::to_string(devices) + " devices");
  for (uint32_t i = 0; i < devices && in.ok(); ++i) header.devices.push_back(in.get_string(kMaxTagLength));
  const uint32_t regions = in.get<uint32_t>();
  if (regions > kMaxRegions) in.fail(std::to_string(regions) + " memory regions");
  for (uint32_t i = 0; i < regions && in.ok(); ++i) {
    MemoryRegionRecord region;
    region.guest_address = in.get<uint64_t>();
    region.size = in.get<uint64_t>();
    region.file_offset = in.get<uint64_t>();
    header.regions.push_back(region);
  }
  header.memory_file_size = in.get<uint64_t>();
  header.state_file_size = in.get<uint64_t>();
  header.state_crc = in.get<uint32_t>();
  const uint32_t disks = in.get<uint32_t>();
  if (disks > kMaxDisks) in.fail(std::to_string(disks) + " frozen disks");
  for (uint32_t i = 0; i < disks && in.ok(); ++i) {
    FrozenDisk disk;
    disk.disk_index = in.get<uint32_t>();
    disk.file = in.get_string(255);
    disk.size = in.get<uint64_t>();
    disk.mtime_ns = in.get<int64_t>();
    header.disks.push_back(disk);
  }
  if (version >= 2) {
    // The count is checked against the size before anything is allocated.
    header.memory_chunk_size = in.get<uint64_t>();
    const uint32_t chunks = in.get<uint32_t>();
    const uint64_t chunk = header.memory_chunk_size;
    if (in.ok() && (chunk < kPageSize || chunk > kMaxMemoryChunkSize || (chunk & (chunk - 1)) != 0))
      in.fail("memory chunk size " + std::to_string(chunk));
    else if (in.ok() && (chunks > kMaxMemoryChunks || chunks != memory_chunk_count(header.memory_file_size, chunk)))
      in.fail(std::to_string(chunks) + " memory checksums for a memory file of " +
              std::to_string(header.memory_file_size) + " bytes in chunks of " + std::to_string(chunk));
    for (uint32_t i = 0; i < chunks && in.ok(); ++i) header.memory_crcs.push_back(in.get<uint32_t>());
  }
  HV_TRY(in.finish());

  // The regions must be page-aligned, non-empty, inside the memory file
  // and not overlap in it: restore maps them from there.
  uint64_t file_end = 0;
  for (const MemoryRegionRecord& region : header.regions) {
    if (region.size == 0 || region.size % kPageSize || region.guest_address % kPageSize ||
        region.file_offset % kPageSize || region.guest_address + region.size < region.guest_address)
      return corrupt("a memory region is empty, unaligned or wraps");
    if (region.file_offset < file_end) return corrupt("memory regions overlap in the memory file");
    if (region.file_offset + region.size < region.file_offset ||
        region.file_offset + region.size > header.memory_file_size)
      return corrupt("a memory region lies outside the memory file");
    file_end = region.file_offset + region.size;
  }
  if (header.regions.empty()) return corrupt("no memory regions");
  for (const FrozenDisk& disk : header.disks)
    if (disk.file.empty() || disk.file.find('/') != std::string::npos || disk.file[0] == '.')
      return corrupt("frozen disk name '" + disk.file + "' is not a plain file name");
  return header;
}

}  // namespace hostvisor::snapshot
