#include "daemon/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "base/fd.h"

namespace hostvisor::daemon {

namespace fs = std::filesystem;

Result<void> write_file_atomically(const std::string& path, std::string_view content, int mode) {
  const std::string temp = path + ".tmp-" + std::to_string(::getpid());
  {
    UniqueFd fd = HV_TRY(open_file(temp, O_WRONLY | O_CREAT | O_TRUNC, mode));
    if (auto written = write_fully(fd.get(), content); !written) {
      ::unlink(temp.c_str());
      return written.error().with_context(temp);
    }
    if (::fsync(fd.get()) != 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return Error::from_errno("fsync " + temp, err);
    }
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return Error::from_errno("rename " + temp + " to " + path, err);
  }
  return sync_directory(fs::path(path).parent_path().string());
}

Result<void> sync_directory(const std::string& path) {
  UniqueFd fd = HV_TRY(open_file(path.empty() ? "." : path, O_RDONLY | O_DIRECTORY));
  if (::fsync(fd.get()) != 0) return Error::from_errno("fsync " + path);
  return ok();
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

}  // namespace hostvisor::daemon
