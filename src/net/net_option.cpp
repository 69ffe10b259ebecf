#include "net/net_option.h"

#include <sstream>
#include <vector>

namespace hostvisor::net {

Result<NetOption> parse_net_option(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument,
                 "--net " + text + ": " + why + " (expected tap,ifname=NAME[,mac=52:54:00:12:34:56])");
  };
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) parts.push_back(part);
  if (parts.empty() || parts[0] != "tap") return bad("the only backend so far is 'tap'");
  NetOption option;
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    if (eq == std::string::npos) return bad("'" + parts[i] + "' is not key=value");
    const std::string key = parts[i].substr(0, eq), value = parts[i].substr(eq + 1);
    if (key == "ifname") {
      if (value.empty() || value.size() >= 16) return bad("ifname must be 1 to 15 characters");
      option.ifname = value;
    } else if (key == "mac") {
      auto mac = parse_mac_address(value);
      if (!mac) return bad(mac.error().message());
      option.mac = *mac;
    } else {
      return bad("unknown key '" + key + "'");
    }
  }
  if (option.ifname.empty()) return bad("ifname= is required");
  return option;
}

}  // namespace hostvisor::net
