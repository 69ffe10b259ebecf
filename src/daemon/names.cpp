#include "daemon/names.h"

namespace hostvisor::daemon {

namespace {
bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
}  // namespace

Result<void> check_name(std::string_view name, std::string_view what) {
  auto refuse = [&] {
    std::string shown;
    for (char c : name.substr(0, 80)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    return Error(ErrorCode::kInvalidArgument,
                 std::string(what) + " '" + shown +
                     "' is not valid: use 1 to 63 lowercase letters, digits and '-', starting with a letter or digit");
  };
  if (name.empty() || name.size() > 63 || !is_lower_alnum(name[0])) return refuse();
  for (char c : name)
    if (!is_lower_alnum(c) && c != '-') return refuse();
  return ok();
}

}  // namespace hostvisor::daemon
