#include "net/switch/switch_paths.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace hostvisor::net {

Result<void> check_network_name(const std::string& name) {
  if (name.empty() || name.size() > 64)
    return Error(ErrorCode::kInvalidArgument, "a network name has 1 to 64 characters");
  if (name[0] == '.') return Error(ErrorCode::kInvalidArgument, "a network name cannot start with '.'");
  for (char c : name) {
    const bool allowed =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!allowed)
      return Error(ErrorCode::kInvalidArgument,
                   std::string("a network name takes letters, digits, '.', '_' and '-', not '") + c + "'");
  }
  return ok();
}

Result<void> ensure_private_directory(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return Error::from_errno("creating " + path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Error::from_errno(path);
  if (!S_ISDIR(st.st_mode)) return Error(ErrorCode::kIo, path + " is not a directory (a symlink?); remove it");
  if (st.st_uid != ::geteuid())
    return Error(ErrorCode::kIo, path + " belongs to another user (uid " + std::to_string(st.st_uid) +
                                     "); remove it or set XDG_RUNTIME_DIR");
  if ((st.st_mode & 077) != 0)
    return Error(ErrorCode::kIo, path + " is open to other users; make it private with `chmod 700 " + path + "`");
  return ok();
}

Result<std::string> switch_directory() {
  std::string base;
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime && runtime[0] == '/') {
    base = std::string(runtime) + "/hostvisor";
  } else {
    base = "/tmp/hostvisor-" + std::to_string(::geteuid());
  }
  HV_TRY(ensure_private_directory(base));
  const std::string directory = base + "/net";
  HV_TRY(ensure_private_directory(directory));
  return directory;
}

Result<SwitchPaths> switch_paths(const std::string& name) {
  HV_TRY(check_network_name(name));
  const std::string directory = HV_TRY(switch_directory());
  SwitchPaths paths{directory, directory + "/" + name + ".sock", directory + "/" + name + ".lock",
                    directory + "/" + name + ".log"};
  if (paths.socket.size() >= sizeof(sockaddr_un{}.sun_path))
    return Error(ErrorCode::kInvalidArgument, "the switch socket path " + paths.socket +
                                                  " is too long for a unix socket; use a shorter name or "
                                                  "XDG_RUNTIME_DIR");
  return paths;
}

}  // namespace hostvisor::net
