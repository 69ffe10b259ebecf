// FileImage: a BlockDevice stored in one host file (raw and qcow2 images).
// What every such image does the same way: it is read-only when its file is,
// and a change to a read-only disk gets one error.
#pragma once

#include <memory>
#include <utility>

#include "block/block_device.h"
#include "block/host_file.h"

namespace hostvisor::block {

class FileImage : public BlockDevice {
 public:
  bool read_only() const override { return !file_->writable(); }
  HostFile& file() { return *file_; }

 protected:
  explicit FileImage(std::unique_ptr<HostFile> file) : file_(std::move(file)) {}
  // Refuses a change to a read-only disk, naming the file.
  Result<void> check_writable() const {
    if (read_only()) return Error(ErrorCode::kInvalidArgument, file_->path() + ": disk is read-only");
    return ok();
  }

  std::unique_ptr<HostFile> file_;
};

}  // namespace hostvisor::block
