// Writes a "newc" cpio archive, the format the Linux kernel unpacks as its
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::guest {

class CpioWriter {
 public:
  // Paths are relative to the archive root ("init", "bin/sh"); parents must
  // be added before their children. Modes are permission bits only.
  Result<void> add_directory(const std::string& path, uint32_t mode = 0755);
  Result<void> add_file(const std::string& path, const std::string& data, uint32_t mode = 0644);
  Result<void> add_symlink(const std::string& path, const std::string& target);
  Result<void> add_char_device(const std::string& path, uint32_t major, uint32_t minor, uint32_t mode = 0600);

  // The archive with its TRAILER!!! entry. The writer can be reused after.
  std::vector<uint8_t> finish();

 private:
  Result<void> add(const std::string& path, uint32_t type_and_mode, const std::string& data, uint32_t rdev_major,
                   uint32_t rdev_minor);

  std::vector<uint8_t> out_;
  uint32_t next_inode_ = 1;
};

}  // namespace hostvisor::guest
