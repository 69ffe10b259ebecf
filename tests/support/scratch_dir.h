// A fresh directory under the system's temporary directory for one test,
// removed with everything in it when the test ends. `path` stays empty if
// it could not be made; tests check that before using it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace hostvisor::testing {

struct ScratchDir {
  std::filesystem::path path;

  // `prefix` names the test in the directory's name (hv-PREFIX-XXXXXX), so a
  // directory left by a killed test says whose it is.
  explicit ScratchDir(const std::string& prefix) {
    std::string name = (std::filesystem::temp_directory_path() / ("hv-" + prefix + "-XXXXXX")).string();
    if (::mkdtemp(name.data())) path = name;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ignored;
    if (!path.empty()) std::filesystem::remove_all(path, ignored);
  }
};

}  // namespace hostvisor::testing
