// The --fw-cfg parser on arbitrary text: it never crashes, an error names
// the option, and what it accepts is a name fw_cfg can hold under opt/ with
// exactly one source of contents.
#include "cli/fw_cfg_option.h"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace hostvisor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto option = cli::parse_fw_cfg_option(text);
  if (!option.ok()) {
    if (option.error().message().rfind("--fw-cfg: ", 0) != 0) std::abort();
    return 0;
  }
  if (option->name.rfind("opt/", 0) != 0 || option->name.size() <= 4 || option->name.size() > 55) std::abort();
  if (option->name.find(',') != std::string::npos || option->text.find(',') != std::string::npos) std::abort();
  if (!option->host_path.empty() && !option->text.empty()) std::abort();
  return 0;
}
