#include "tests/linux/tcc_toolchain.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

namespace hostvisor::testing {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTccLibDir = "/usr/lib/x86_64-linux-gnu/tcc";
constexpr const char* kLibDir = "/usr/lib/x86_64-linux-gnu";

// The system headers tcc reads for `source`, from the line markers of its
// preprocessed output (`# LINE "PATH"`).
Result<std::set<std::string>> system_headers(const std::string& source) {
  const fs::path path(source);
  const std::string command =
      "cd '" + path.parent_path().string() + "' && " + kTccPath + " -E '" + path.filename().string() + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return Error::from_errno("tcc -E");
  std::string output;
  char buffer[8192];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  if (::pclose(pipe) != 0) return Error(ErrorCode::kIo, "tcc -E " + source + " failed: " + output.substr(0, 2000));
  static const std::regex kMarker(R"re(^# \d+ "(/usr/[^"]+)")re");
  std::set<std::string> headers;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, kMarker)) headers.insert(m[1]);
  }
  if (headers.empty()) return Error(ErrorCode::kCorrupt, "tcc -E " + source + " read no system header");
  return headers;
}

}  // namespace

Result<void> add_tcc_toolchain(InitramfsAppendix& appendix, const std::vector<std::string>& sources) {
  for (const char* program : {kTccPath, kMakePath})
    if (::access(program, X_OK) != 0)
      return Error(ErrorCode::kNotFound,
                   std::string(program) + " is missing: install Debian's tcc and make (scripts/setup-host.sh)");
  HV_TRY(appendix.add_host_program(kTccPath));
  HV_TRY(appendix.add_host_program(kMakePath));
  // tcc's runtime support (e.g. long double and bounds helpers) and its own
  // <stddef.h>, <stdarg.h>...
  HV_TRY(appendix.add_host_file(std::string(kTccLibDir) + "/libtcc1.a"));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(std::string(kTccLibDir) + "/include", ec))
    HV_TRY(appendix.add_host_file(entry.path().string()));
  if (ec) return Error(ErrorCode::kNotFound, std::string(kTccLibDir) + "/include: " + ec.message());
  // glibc's start files and libc.so, a link script naming libc.so.6 (there
  // from the programs' libraries), libc_nonshared.a and the loader.
  // tcc's linker also finds libc.so.6's own needed loader by name in its
  // library directories, where the programs' /lib64 path is not.
  for (const char* name : {"crt1.o", "crti.o", "crtn.o", "libc.so", "libc_nonshared.a", "ld-linux-x86-64.so.2"})
    HV_TRY(appendix.add_host_file(std::string(kLibDir) + "/" + name));
  for (const std::string& source : sources)
    for (const std::string& header : HV_TRY(system_headers(source))) HV_TRY(appendix.add_host_file(header));
  return ok();
}

}  // namespace hostvisor::testing
