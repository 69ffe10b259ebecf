#include "vmm/disk_snapshots.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>

#include "block/image_open.h"
#include "block/qcow2/image.h"
#include "snapshot/snapshot_format.h"

namespace hostvisor {

namespace fs = std::filesystem;

Result<snapshot::FrozenDisk> freeze_disk_into(const DiskToFreeze& disk, const std::string& temp_dir) {
  const std::string frozen = temp_dir + "/" + disk.frozen_name;
  if (::link(disk.live_path.c_str(), frozen.c_str()) < 0) {
    if (errno != EXDEV) return Error::from_errno("freezing disk " + disk.live_path + " into the snapshot");
    // Another file system: the paused guest's image is copied whole.
    std::error_code ec;
    if (!fs::copy_file(disk.live_path, frozen, ec))
      return Error(ErrorCode::kIo, "copying disk " + disk.live_path + " into the snapshot: " + ec.message());
    UniqueFd fd = HV_TRY(open_file(frozen, O_RDONLY));
    if (::fsync(fd.get()) < 0) return Error::from_errno("fsync of " + frozen);
  }
  // The mode belongs to the inode: the live name is replaced by an overlay
  // right after, and the guest's open descriptor is not affected.
  if (::chmod(frozen.c_str(), 0444) < 0) return Error::from_errno("making " + frozen + " read-only");
  struct stat st;
  if (::stat(frozen.c_str(), &st) < 0) return Error::from_errno("stat of " + frozen);
  return snapshot::FrozenDisk{disk.index, disk.frozen_name, static_cast<uint64_t>(st.st_size),
                              int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

Result<void> carry_over_frozen_images(const std::string& final_dir, const std::string& temp_dir) {
  std::error_code ec;
  if (!fs::is_directory(final_dir, ec)) return ok();
  for (const auto& entry : fs::directory_iterator(final_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == snapshot::kHeaderFile || name == snapshot::kStateFile || name == snapshot::kMemoryFile) continue;
    const std::string target = temp_dir + "/" + name;
    if (fs::exists(target, ec)) continue;
    if (::link(entry.path().c_str(), target.c_str()) < 0)
      return Error::from_errno("keeping " + entry.path().string() + ", which a disk chain backs onto");
  }
  return ok();
}

Result<std::string> prepare_overlay(const std::string& path, const std::string& backing,
                                    const std::string& backing_format, uint64_t size) {
  const std::string temp = path + ".new-overlay";
  std::error_code ec;
  fs::remove(temp, ec);
  block::Qcow2CreateOptions options;
  options.size = size;
  options.backing_file = backing;
  options.backing_format = backing_format;
  auto created = block::Qcow2Image::create(temp, options);
  if (!created) {
    fs::remove(temp, ec);
    return std::move(created).error().with_context("creating the overlay " + temp);
  }
  return temp;
}

Result<void> install_overlay(const std::string& prepared, const std::string& path) {
  if (::rename(prepared.c_str(), path.c_str()) < 0) return Error::from_errno("putting the overlay at " + path);
  return ok();
}

Result<void> create_overlay(const std::string& path, const std::string& backing, const std::string& backing_format,
                            uint64_t size) {
  return install_overlay(HV_TRY(prepare_overlay(path, backing, backing_format, size)), path);
}

Result<LiveImageMode> live_image_mode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) return Error::from_errno("stat of " + path);
  return LiveImageMode{path, static_cast<uint64_t>(st.st_ino), static_cast<uint32_t>(st.st_mode & 07777)};
}

void give_back_mode(const LiveImageMode& live) {
  struct stat st;
  if (::stat(live.path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_ino) == live.inode)
    (void)::chmod(live.path.c_str(), live.mode);
}

Result<std::vector<std::string>> create_restore_overlays(const snapshot::Snapshot& snapshot, MachineConfig& config) {
  std::vector<std::string> overlays(config.disks.size());
  const fs::path dir = fs::absolute(snapshot.dir()).lexically_normal();
  const fs::path base = dir.has_filename() ? dir : dir.parent_path();
  const auto stamp =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  for (const snapshot::FrozenDisk& frozen : snapshot.header().disks) {
    if (frozen.disk_index >= config.disks.size())
      return Error(ErrorCode::kCorrupt, "snapshot " + snapshot.dir() + ": frozen disk " + frozen.file +
                                            " belongs to disk " + std::to_string(frozen.disk_index) +
                                            ", which the machine does not have");
    const std::string backing = (base / frozen.file).string();
    auto format = block::probe_format(backing);
    if (!format) return std::move(format).error();
    const std::string overlay =
        base.parent_path() / (base.filename().string() + ".run-" + std::to_string(stamp) + "-" +
                              std::to_string(::getpid()) + ".disk" + std::to_string(frozen.disk_index) + ".qcow2");
    // The guest sees the frozen image's size.
    auto image = block::open_image(backing, block::OpenOptions{.format = *format});
    if (!image) return std::move(image).error();
    HV_TRY(create_overlay(overlay, backing, block::image_format_name(*format), (*image)->virtual_size()));
    config.disks[frozen.disk_index].disk.path = overlay;
    config.disks[frozen.disk_index].disk.format = block::ImageFormat::kQcow2;
    overlays[frozen.disk_index] = overlay;
  }
  return overlays;
}

}  // namespace hostvisor
