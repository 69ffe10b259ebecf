#include "snapshot/snapshot_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "snapshot/crc32c.h"
#include "snapshot/snapshot_format.h"

namespace hostvisor::snapshot {

namespace {

Result<void> write_file(const std::string& path, std::span<const uint8_t> bytes) {
  UniqueFd fd = HV_TRY(open_file(path, O_WRONLY | O_CREAT | O_EXCL, 0644));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("writing " + path);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) < 0) return Error::from_errno("fsync of " + path);
  if (::fchmod(fd.get(), 0444) < 0) return Error::from_errno("making " + path + " read-only");
  return {};
}

Result<void> fsync_path(const std::string& path) {
  UniqueFd fd = HV_TRY(open_file(path, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) < 0) return Error::from_errno("fsync of " + path);
  return {};
}

// A temporary directory removes itself unless the snapshot was published.
class TempDir {
 public:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(path_, ignored);
    }
  }
  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Removes the temporary directories that saves of `name` left beside it
// when their process died mid-save (a crash, SIGKILL). A directory whose
// writer still runs (another process saving under that name) is left alone,
// and so is anything whose name does not carry a pid.
void remove_stale_temp_dirs(const std::filesystem::path& parent, const std::string& name) {
  namespace fs = std::filesystem;
  const std::string prefix = temp_dir_prefix(name);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(prefix, 0) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(file.c_str() + prefix.size(), &end, 10);
    if (pid <= 0 || *end != '-' || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

}  // namespace

std::string temp_dir_prefix(const std::string& name) { return "." + name + ".tmp-"; }

Result<SnapshotWriteStats> write_snapshot(const std::string& dir, SnapshotContents contents, const GuestMemory& memory,
                                          const WriteProgress& progress) {
  namespace fs = std::filesystem;
  const fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
  const fs::path parent = target.has_filename() ? target.parent_path() : target.parent_path().parent_path();
  const std::string name = (target.has_filename() ? target : target.parent_path()).filename().string();
  if (name.empty() || name == "." || name == "..")
    return Error(ErrorCode::kInvalidArgument, "snapshot directory " + dir + ": needs a name");
  const fs::path final_path = parent / name;
  std::error_code ec;
  if (fs::exists(final_path, ec) && !fs::exists(final_path / kHeaderFile, ec))
    return Error(ErrorCode::kInvalidArgument,
                 "snapshot directory " + dir + " exists and is not a snapshot; it is left alone");

  remove_stale_temp_dirs(parent, name);
  std::string pattern = (parent / (temp_dir_prefix(name) + std::to_string(::getpid()) + "-XXXXXX")).string();
  if (!::mkdtemp(pattern.data())) return Error::from_errno("creating a temporary directory beside " + dir);
  TempDir temp(pattern);
  // mkdtemp makes it private; a snapshot is as readable as the files beside it.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  if (::chmod(temp.path().c_str(), 0755 & ~mask) < 0) return Error::from_errno("chmod " + temp.path());

  SnapshotWriteStats stats;
  uint64_t written_before = 0;
  auto report = [&](uint64_t bytes) {
    if (progress) progress(written_before + bytes);
  };

  // Memory first: it is the bulk, and a crash in it leaves no header.
  {
    const std::string path = temp.path() + "/" + kMemoryFile;
    UniqueFd fd = HV_TRY(open_file(path, O_RDWR | O_CREAT | O_EXCL, 0644));
    const MemoryImageStats image = HV_TRY(write_memory_image(fd.get(), memory, report));
    if (::fsync(fd.get()) < 0) return Error::from_errno("fsync of " + path);
    if (::fchmod(fd.get(), 0444) < 0) return Error::from_errno("making " + path + " read-only");
    stats.memory_data_bytes = image.data_bytes;
    contents.header.memory_file_size = image.file_size;
    contents.header.memory_chunk_size = image.chunk_size;
    contents.header.memory_crcs = image.chunk_crcs;
    contents.header.regions = describe_regions(memory);
    written_before += image.data_bytes;
  }

  const std::vector<uint8_t> state = encode_records(contents.records);
  HV_TRY(write_file(temp.path() + "/" + kStateFile, state));
  stats.state_bytes = state.size();
  contents.header.state_file_size = state.size();
  contents.header.state_crc = crc32c(state);
  written_before += state.size();
  report(0);

  if (contents.add_files) HV_TRY(contents.add_files(temp.path(), final_path.string(), contents.header));

  // The header last: a directory without one is never taken for a snapshot.
  const std::vector<uint8_t> header = encode_header(contents.header);
  HV_TRY(write_file(temp.path() + "/" + kHeaderFile, header));
  stats.header_bytes = header.size();
  written_before += header.size();
  report(0);
  HV_TRY(fsync_path(temp.path()));

  const bool replacing = fs::exists(final_path, ec);
  if (replacing) {
    // Swap atomically, then remove the old snapshot (now at the temporary name).
    if (::renameat2(AT_FDCWD, temp.path().c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) < 0)
      return Error::from_errno("replacing snapshot " + final_path.string());
  } else {
    if (::rename(temp.path().c_str(), final_path.c_str()) < 0)
      return Error::from_errno("publishing snapshot " + final_path.string());
  }
  if (contents.on_published) {
    auto published = contents.on_published(final_path.string());
    if (!published) {
      // Back to the previous snapshot (or none); `temp` removes the new one.
      const int undone = replacing
                             ? ::renameat2(AT_FDCWD, temp.path().c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE)
                             : ::rename(final_path.c_str(), temp.path().c_str());
      if (undone < 0) {
        if (!replacing) temp.release();
        return std::move(published).error().with_context("the snapshot " + final_path.string() +
                                                         " could not be withdrawn (" + std::strerror(errno) + ")");
      }
      (void)fsync_path(parent.string());
      return std::move(published).error();
    }
  }
  if (!replacing) temp.release();
  HV_TRY(fsync_path(parent.string()));
  return stats;  // `temp` removes the old snapshot, if there was one
}

}  // namespace hostvisor::snapshot
