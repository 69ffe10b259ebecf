// The `--disk FILE[,format=raw|qcow2][,cache=writeback|none|unsafe][,readonly=on|off][,discard=on|off]`
// option of `hostvisor run`.
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

  OpenOptions open_options() const;
};

Result<DiskOption> parse_disk_option(const std::string& text);

}  // namespace hostvisor::block
