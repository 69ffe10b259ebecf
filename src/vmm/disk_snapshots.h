// Disks in snapshots, the way QEMU's external snapshots keep them: at a
// snapshot each writable disk's image is frozen into the snapshot directory
// (hard-linked there and made read-only, so taking it costs no copy) and the
// running guest goes on in a new qcow2 overlay on top of it, under the
// disk's own name. A restore or a clone opens a new overlay of its own on
// the frozen image, so the snapshot is never written and disk and memory
// always agree. Frozen images of an earlier snapshot that a chain still
// backs onto are carried over when a snapshot of the same name replaces it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "snapshot/snapshot_header.h"
#include "snapshot/snapshot_reader.h"
#include "vmm/machine_config.h"

namespace hostvisor {

struct DiskToFreeze {
  uint32_t index = 0;
  std::string live_path;  // absolute
  std::string format;     // "raw" or "qcow2"
  uint64_t virtual_size = 0;
  std::string frozen_name;  // unique within the snapshot directory
};

// Puts the (flushed, quiesced) image into `temp_dir` under its frozen name,
// read-only, and describes it for the header. A hard link where the
// directory shares the image's file system, else a copy.
Result<snapshot::FrozenDisk> freeze_disk_into(const DiskToFreeze& disk, const std::string& temp_dir);

// Links into `temp_dir` every frozen image of the snapshot at `final_dir`
// (about to be replaced) that it lacks: overlays may back onto them.
Result<void> carry_over_frozen_images(const std::string& final_dir, const std::string& temp_dir);

// A qcow2 image at `path` of `size` bytes backed by `backing` (an absolute
// path), replacing atomically whatever `path` named.
Result<void> create_overlay(const std::string& path, const std::string& backing, const std::string& backing_format,
                            uint64_t size);

// For a restore: a new overlay on each frozen disk of `snapshot`, beside the
// snapshot directory, and `config`'s disks pointed at them. Returns the
// overlays' paths, by disk.
Result<std::vector<std::string>> create_restore_overlays(const snapshot::Snapshot& snapshot, MachineConfig& config);

}  // namespace hostvisor
