// Opens a snapshot directory and checks all of it that does not scale with
// RAM before anything is restored: the header (magic, format version,
// checksum), the state file (size, checksum, every record's framing and
// checksum), the memory file's size and each frozen disk's size and time.
// Whatever is wrong is refused with a message that says what, so a restore
// never starts from a damaged snapshot. The memory file's contents are
// checked against their checksums by verify_memory() (a restore in copy mode
// does it as it reads them): reading all of RAM would cost what a mapped
// restore saves.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "snapshot/snapshot_header.h"
#include "snapshot/state_records.h"

namespace hostvisor::snapshot {

class Snapshot {
 public:
  static Result<Snapshot> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const SnapshotHeader& header() const { return header_; }
  const std::vector<StateRecord>& records() const { return records_; }
  // The record tagged `tag`, or a kCorrupt error naming it.
  Result<const StateRecord*> record(std::string_view tag) const;
  // The memory file, open read-only (restore maps or reads it).
  int memory_fd() const { return memory_.get(); }
  std::string path_of(const std::string& file) const { return dir_ + "/" + file; }
  // Reads the memory file's data and checks every chunk's checksum; a
  // format 1 snapshot has none and passes (has_memory_checksums() says).
  Result<void> verify_memory() const;
  bool has_memory_checksums() const { return !header_.memory_crcs.empty(); }

 private:
  std::string dir_;
  SnapshotHeader header_;
  std::vector<StateRecord> records_;
  UniqueFd memory_;
};

// Checks a header and state file given as bytes (the fuzz target's entry).
Result<std::vector<StateRecord>> check_state_file(const SnapshotHeader& header, std::span<const uint8_t> state);

}  // namespace hostvisor::snapshot
