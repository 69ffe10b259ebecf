// The snapshot directory and the versions of its format.
//
//   DIR/header   magic, format version, payload length, CRC-32C, then the
//                payload (SnapshotHeader): hostvisor's version, the machine
//                configuration, the device list, the RAM regions and the
//                sizes and checksums of the other files (the memory file's
//                a CRC-32C per chunk)
//   DIR/state    the state records, one after another (state_records.h)
//   DIR/memory   guest RAM, each region at a fixed offset; sparse: pages
//                never touched and zero pages are holes
//
// Every file is read-only once written, and the directory appears only when
// all of it is on disk (snapshot_writer.h).
#pragma once

#include <cstdint>

namespace hostvisor::snapshot {

inline constexpr char kHeaderFile[] = "header";
inline constexpr char kStateFile[] = "state";
inline constexpr char kMemoryFile[] = "memory";

inline constexpr uint8_t kHeaderMagic[8] = {'H', 'V', 'S', 'N', 'A', 'P', 'S', 'H'};
inline constexpr uint32_t kRecordMagic = 0x43525648;  // "HVRC"

// The format this hostvisor writes, and the oldest it still reads. A change
// to the header, the record framing or the memory layout bumps it; a change
// to one component's State bumps that record's own version instead.
//   1  the first
//   2  the header ends with the memory file's checksums (memory_checksums.h);
//      a format 1 snapshot still restores, without memory checks, and
//      `hostvisor snapshot verify` says it has none
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestReadableFormatVersion = 1;

// The hostvisor that wrote a snapshot, for messages.
inline constexpr char kHostvisorVersion[] = "hostvisor 0.1";

// Limits a reader applies to the untrusted files.
inline constexpr uint32_t kMaxHeaderPayload = 1u << 20;
inline constexpr uint32_t kMaxRecordPayload = 64u << 20;
inline constexpr size_t kMaxTagLength = 64;
inline constexpr size_t kMaxRecords = 4096;
inline constexpr size_t kMaxRegions = 64;
inline constexpr size_t kMaxDevices = 4096;
inline constexpr size_t kMaxDisks = 64;

inline constexpr uint64_t kPageSize = 4096;

}  // namespace hostvisor::snapshot
