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
// The two halves of create_overlay: the image at a temporary name beside
// `path` (returned), then that name renamed over `path`.
Result<std::string> prepare_overlay(const std::string& path, const std::string& backing,
                                    const std::string& backing_format, uint64_t size);
Result<void> install_overlay(const std::string& prepared, const std::string& path);

// A live image's permission bits, kept before a save freezes it (freezing
// makes its inode read-only) so a failed save can give them back.
struct LiveImageMode {
  std::string path;
  uint64_t inode = 0;
  uint32_t mode = 0;
};
Result<LiveImageMode> live_image_mode(const std::string& path);
// Gives `path` its mode back if it still names the same file (no overlay
// took its place).
void give_back_mode(const LiveImageMode& live);

// For a restore: a new overlay on each frozen disk of `snapshot`, beside the
// snapshot directory, and `config`'s disks pointed at them. Returns the
// overlays' paths, by disk.
Result<std::vector<std::string>> create_restore_overlays(const snapshot::Snapshot& snapshot, MachineConfig& config);

}  // namespace hostvisor
