// The `--disk FILE[,format=raw|qcow2][,cache=writeback|none|unsafe][,readonly=on|off][,discard=on|off]
// [,serial=ID]` option of `hostvisor run`.
#pragma once

#include <string>

#include "block/image_open.h"

namespace hostvisor::block {

struct DiskOption {
  std::string path;
  ImageFormat format = ImageFormat::kProbe;
  CacheMode cache = CacheMode::kWriteback;
  bool read_only = false;
  bool discard = false;  // pass guest discards to the image (otherwise ignored)
  // What the guest reads as the disk's serial (/sys/block/vdX/serial): 1 to
  // 20 characters of [A-Za-z0-9_.-]; empty: hostvisor-diskN. A guest finds
  // a disk by it whatever the disks' order.
  std::string serial;

  OpenOptions open_options() const;
};

Result<DiskOption> parse_disk_option(const std::string& text);

}  // namespace hostvisor::block
