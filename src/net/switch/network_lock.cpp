#include "net/switch/network_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace hostvisor::net {

Result<UniqueFd> lock_network(const std::string& path) {
  for (;;) {
    UniqueFd lock = HV_TRY(open_file(path, O_RDWR | O_CREAT, 0600));
    while (::flock(lock.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return Error::from_errno("locking " + path);
    }
    struct stat held = {};
    struct stat current = {};
    if (::fstat(lock.get(), &held) != 0) return Error::from_errno("locking " + path);
    if (::stat(path.c_str(), &current) == 0 && current.st_ino == held.st_ino && current.st_dev == held.st_dev)
      return lock;
    // The switch that held it ended and removed the file meanwhile.
  }
}

void remove_network_files(const std::string& lock_path, const std::string& log_path) {
  if (!log_path.empty()) ::unlink(log_path.c_str());
  if (!lock_path.empty()) ::unlink(lock_path.c_str());
}

}  // namespace hostvisor::net
