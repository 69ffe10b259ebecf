#include "cli/fw_cfg_option.h"

#include <sstream>

namespace hostvisor::cli {

namespace {

constexpr size_t kMaxNameSize = 55;  // fw_cfg's 56-byte name field with its NUL

Error bad(const std::string& why) {
  return Error(ErrorCode::kInvalidArgument,
               "--fw-cfg: " + why + " (expected name=opt/NAME,file=PATH or name=opt/NAME,string=TEXT)");
}

}  // namespace

Result<FwCfgFileConfig> parse_fw_cfg_option(const std::string& text) {
  FwCfgFileConfig out;
  bool has_name = false, has_file = false, has_string = false;
  std::stringstream parts(text);
  for (std::string part; std::getline(parts, part, ',');) {
    const size_t eq = part.find('=');
    if (eq == std::string::npos) return bad("\"" + part + "\" is not key=value");
    const std::string key = part.substr(0, eq), value = part.substr(eq + 1);
    bool* seen = key == "name" ? &has_name : key == "file" ? &has_file : key == "string" ? &has_string : nullptr;
    if (!seen) return bad("unknown key \"" + key + "\"");
    if (*seen) return bad(key + "= given twice");
    *seen = true;
    if (key == "name") out.name = value;
    if (key == "file") out.host_path = value;
    if (key == "string") out.text = value;
  }
  if (!has_name) return bad("no name=");
  if (out.name.rfind("opt/", 0) != 0 || out.name.size() == 4)
    return bad("name \"" + out.name + "\" must start with opt/ and name something after it");
  if (out.name.size() > kMaxNameSize)
    return bad("name \"" + out.name + "\" is longer than " + std::to_string(kMaxNameSize) + " characters");
  if (has_file == has_string) return bad("give exactly one of file= and string=");
  if (has_file && out.host_path.empty()) return bad("file= is empty");
  return out;
}

}  // namespace hostvisor::cli
