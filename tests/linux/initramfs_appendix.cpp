#include "tests/linux/initramfs_appendix.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace hostvisor::testing {

namespace fs = std::filesystem;

namespace {

Result<std::string> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kNotFound, "cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

Result<std::vector<std::string>> shared_libraries(const std::string& binary) {
  FILE* pipe = ::popen(("ldd " + binary + " 2>&1").c_str(), "r");
  if (!pipe) return Error::from_errno("ldd");
  std::string listing;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) listing.append(buffer, n);
  if (::pclose(pipe) != 0) return Error(ErrorCode::kIo, "ldd " + binary + " failed: " + listing);
  std::vector<std::string> libraries;
  static const std::regex kResolved(R"(=>\s+(/\S+))"), kLoader(R"(^\s*(/\S+)\s+\()");
  std::istringstream lines(listing);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, kResolved) || std::regex_search(line, m, kLoader)) libraries.push_back(m[1]);
  }
  if (libraries.empty()) return Error(ErrorCode::kCorrupt, "ldd listed no libraries for " + binary + ": " + listing);
  return libraries;
}

Result<void> InitramfsAppendix::add_parents(const std::string& guest_path) {
  fs::path at;
  for (const auto& part : fs::path(guest_path).parent_path().relative_path()) {
    at /= part;
    if (added_.insert(at.string()).second) HV_TRY(cpio_.add_directory(at.string()));
  }
  return ok();
}

Result<void> InitramfsAppendix::add_file(const std::string& guest_path, const std::string& data, uint32_t mode) {
  if (!fs::path(guest_path).is_absolute()) return Error(ErrorCode::kInvalidArgument, "not absolute: " + guest_path);
  const std::string relative = fs::path(guest_path).relative_path().string();
  if (!added_.insert(relative).second) return ok();
  HV_TRY(add_parents(guest_path));
  return cpio_.add_file(relative, data, mode);
}

Result<void> InitramfsAppendix::add_host_file(const std::string& host_path, uint32_t mode) {
  if (added_.count(fs::path(host_path).relative_path().string())) return ok();
  std::error_code ec;
  const fs::path real = fs::canonical(host_path, ec);
  if (ec) return Error(ErrorCode::kNotFound, host_path + ": " + ec.message());
  return add_file(host_path, HV_TRY(read_all(real)), mode);
}

Result<void> InitramfsAppendix::add_host_program(const std::string& host_path) {
  HV_TRY(add_host_file(host_path, 0755));
  for (const std::string& library : HV_TRY(shared_libraries(host_path))) HV_TRY(add_host_file(library, 0755));
  return ok();
}

Result<void> InitramfsAppendix::write_after(const std::string& base_initrd, const std::string& out_path) {
  std::string image = HV_TRY(read_all(base_initrd));
  const std::vector<uint8_t> appendix = cpio_.finish();
  // Each archive of a concatenation starts 4-byte aligned (newc already is).
  image.append(reinterpret_cast<const char*>(appendix.data()), appendix.size());
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  out.write(image.data(), static_cast<std::streamsize>(image.size()));
  if (!out) return Error(ErrorCode::kIo, "cannot write " + out_path);
  return ok();
}

}  // namespace hostvisor::testing
