// The --net parser on arbitrary text: it never crashes, an error is one
// line naming the option, and what it accepts survives a round trip
// through the forward syntax.
#include "net/net_option.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "net/switch/switch_paths.h"

using namespace hostvisor::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto option = parse_net_option(text);
  if (!option.ok()) {
    const std::string& message = option.error().message();
    if (message.rfind("--net " + text + ": ", 0) != 0) std::abort();
    if (text.find('\n') == std::string::npos && message.find('\n') != std::string::npos) std::abort();
    return 0;
  }
  if (const auto* user = std::get_if<UserNetOption>(&*option)) {
    for (const HostForward& forward : user->forwards) {
      auto again = parse_host_forward(format_host_forward(forward));
      if (!again.ok() || !(*again == forward)) std::abort();
      if (forward.guest_address && !user->network.contains(*forward.guest_address)) std::abort();
    }
    if (user->network.prefix_length > kLongestUserPrefix) std::abort();
  }
  if (const auto* tap = std::get_if<TapNetOption>(&*option); tap && (tap->ifname.empty() || tap->ifname.size() > 15))
    std::abort();
  if (const auto* internal = std::get_if<InternalNetOption>(&*option)) {
    if (!check_network_name(internal->name).ok()) std::abort();
    if (internal->dhcp && (internal->dhcp->prefix_length > 30 || internal->dhcp->prefix_length < 8)) std::abort();
  }
  return 0;
}
