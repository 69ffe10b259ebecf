#include "guest/default_guest/cpio_writer.h"

#include <cstdio>

namespace hostvisor::guest {

namespace {
constexpr uint32_t kTypeDirectory = 0040000, kTypeRegular = 0100000, kTypeSymlink = 0120000, kTypeCharDevice = 0020000;

void pad4(std::vector<uint8_t>& out) {
  while (out.size() % 4) out.push_back(0);
}
}  // namespace

Result<void> CpioWriter::add(const std::string& path, uint32_t type_and_mode, const std::string& data,
                             uint32_t rdev_major, uint32_t rdev_minor) {
  if (path.empty() || path[0] == '/' || path.find("..") != std::string::npos)
    return Error(ErrorCode::kInvalidArgument, "cpio: '" + path + "' must be a relative path without '..'");
  if (data.size() > 0xffffffffu) return Error(ErrorCode::kOutOfRange, "cpio: '" + path + "' is larger than 4 GiB");
  char header[111];
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
  // rdevmajor, rdevminor, namesize, check — each 8 hex digits.
  std::snprintf(header, sizeof header, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", next_inode_++,
                type_and_mode, 0u, 0u, (type_and_mode & kTypeDirectory) == kTypeDirectory ? 2u : 1u, 0u,
                static_cast<uint32_t>(data.size()), 0u, 0u, rdev_major, rdev_minor,
                static_cast<uint32_t>(path.size() + 1), 0u);
  out_.insert(out_.end(), header, header + 110);
  out_.insert(out_.end(), path.begin(), path.end());
  out_.push_back(0);
  pad4(out_);
  out_.insert(out_.end(), data.begin(), data.end());
  pad4(out_);
  return {};
}

Result<void> CpioWriter::add_directory(const std::string& path, uint32_t mode) {
  return add(path, kTypeDirectory | (mode & 07777), "", 0, 0);
}

Result<void> CpioWriter::add_file(const std::string& path, const std::string& data, uint32_t mode) {
  return add(path, kTypeRegular | (mode & 07777), data, 0, 0);
}

Result<void> CpioWriter::add_symlink(const std::string& path, const std::string& target) {
  return add(path, kTypeSymlink | 0777, target, 0, 0);
}

Result<void> CpioWriter::add_char_device(const std::string& path, uint32_t major, uint32_t minor, uint32_t mode) {
  return add(path, kTypeCharDevice | (mode & 07777), "", major, minor);
}

std::vector<uint8_t> CpioWriter::finish() {
  next_inode_ = 0;
  (void)add("TRAILER!!!", 0, "", 0, 0);
  std::vector<uint8_t> result = std::move(out_);
  out_.clear();
  next_inode_ = 1;
  return result;
}

}  // namespace hostvisor::guest
