#include "daemon/library_paths.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "net/switch/switch_paths.h"

namespace hostvisor::daemon {

namespace fs = std::filesystem;

namespace {
std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] == '/' ? std::string(value) : std::string();
}

Result<std::string> runtime_dir() {
  const std::string xdg = env_or_empty("XDG_RUNTIME_DIR");
  if (!xdg.empty()) return xdg + "/hostvisor";
  return "/tmp/hostvisor-" + std::to_string(::getuid());
}

Result<std::string> data_dir() {
  std::string xdg = env_or_empty("XDG_DATA_HOME");
  if (!xdg.empty()) return xdg + "/hostvisor";
  const std::string home = env_or_empty("HOME");
  if (home.empty())
    return Error(ErrorCode::kNotFound, "neither XDG_DATA_HOME nor HOME is set: set one so the VM library has a home");
  return home + "/.local/share/hostvisor";
}
}  // namespace

Result<LibraryPaths> default_library_paths() {
  LibraryPaths paths;
  paths.data_dir = HV_TRY(data_dir());
  paths.runtime_dir = HV_TRY(runtime_dir());
  paths.api_socket = paths.runtime_dir + "/api.sock";
  return paths;
}

Result<std::string> default_api_socket() { return HV_TRY(runtime_dir()) + "/api.sock"; }

Result<void> create_library_directories(const LibraryPaths& paths) {
  std::error_code ec;
  fs::create_directories(fs::path(paths.data_dir).parent_path(), ec);
  HV_TRY(net::ensure_private_directory(paths.data_dir));
  HV_TRY(net::ensure_private_directory(paths.vms_dir()));
  HV_TRY(net::ensure_private_directory(paths.networks_dir()));
  fs::create_directories(fs::path(paths.runtime_dir).parent_path(), ec);
  HV_TRY(net::ensure_private_directory(paths.runtime_dir));
  HV_TRY(net::ensure_private_directory(paths.runtime_dir + "/vms"));
  const std::string socket_dir = fs::path(paths.api_socket).parent_path().string();
  if (!socket_dir.empty() && socket_dir != paths.runtime_dir) {
    fs::create_directories(socket_dir, ec);
  }
  return ok();
}

}  // namespace hostvisor::daemon
