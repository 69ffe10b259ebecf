// Writes a snapshot directory atomically: everything goes into a temporary
// directory beside the target (".NAME.tmp-PID-XXXXXX"), each file is
// fsynced and made read-only, and only then does the directory take the
// target's name (renameat2 RENAME_EXCHANGE over an existing snapshot, then
// the old one is removed). A crash at any point leaves the previous snapshot
// of that name whole and restorable, and at worst a temporary directory that
// no reader takes for a snapshot; the next save of that name removes the
// temporary directories of processes that no longer exist.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "snapshot/memory_image.h"
#include "snapshot/snapshot_header.h"
#include "snapshot/state_records.h"

namespace hostvisor::snapshot {

struct SnapshotContents {
  // The caller fills machine_config, devices and disks; the writer the rest.
  SnapshotHeader header;
  std::vector<StateRecord> records;
  // Puts further files (frozen disk images) into the temporary directory
  // and describes them in the header, before the header is written; gets
  // the directory's final path too (names that must stay valid); may be empty.
  std::function<Result<void>(const std::string& temp_dir, const std::string& final_dir, SnapshotHeader& header)>
      add_files;
  // Runs once the snapshot has its name, before the one it replaced is
  // removed (the running VM moves onto the frozen images here). If it
  // fails, the previous snapshot takes the name back and the new one is
  // removed, as if the save had never happened; may be empty.
  std::function<Result<void>(const std::string& final_dir)> on_published;
};

struct SnapshotWriteStats {
  uint64_t memory_data_bytes = 0;  // non-zero RAM pages written
  uint64_t state_bytes = 0;
  uint64_t header_bytes = 0;
};

// `progress` sees the bytes written so far across the files (a test hook
// that simulates a crash part-way).
Result<SnapshotWriteStats> write_snapshot(const std::string& dir, SnapshotContents contents, const GuestMemory& memory,
                                          const WriteProgress& progress = {});

// The prefix of the temporary directories a save of `name` creates beside
// it (the writer's pid and a random part follow).
std::string temp_dir_prefix(const std::string& name);

}  // namespace hostvisor::snapshot
