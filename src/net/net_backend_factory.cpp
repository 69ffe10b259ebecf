#include "net/net_backend_factory.h"

#include "net/slirp/slirp_backend.h"
#include "net/switch/switch_launcher.h"
#include "net/switch/switch_port_backend.h"
#include "net/tap/tap_backend.h"

namespace hostvisor::net {

Result<std::unique_ptr<NetBackend>> open_net_backend(const NetOption& option) {
  if (const auto* tap = std::get_if<TapNetOption>(&option)) {
    auto backend = TapBackend::open(tap->ifname);
    if (!backend) return std::move(backend).error().with_context("--net tap,ifname=" + tap->ifname);
    return std::unique_ptr<NetBackend>(std::move(backend).value());
  }
  if (const auto* user = std::get_if<UserNetOption>(&option)) {
    auto backend = SlirpBackend::create(*user);
    if (!backend) return std::move(backend).error().with_context("--net user");
    return std::unique_ptr<NetBackend>(std::move(backend).value());
  }
  if (const auto* internal = std::get_if<InternalNetOption>(&option)) {
    const std::string context = "--net internal,name=" + internal->name;
    auto socket = connect_to_switch({internal->name, internal->dhcp, ""});
    if (!socket) return std::move(socket).error().with_context(context);
    // The machine gives every NIC a MAC before it opens the backend.
    const MacAddress mac = internal->mac.value_or(random_local_mac_address());
    auto backend = SwitchPortBackend::open(std::move(socket).value(), {internal->name, mac, internal->dhcp});
    if (!backend) return std::move(backend).error().with_context(context);
    return std::unique_ptr<NetBackend>(std::move(backend).value());
  }
  return Error(ErrorCode::kInternal, "--net none has no backend; the machine plugs no NIC for it");
}

}  // namespace hostvisor::net
