#include "net/net_backend_factory.h"

#include "net/host_only/host_only_port.h"
#include "net/slirp/slirp_backend.h"
#include "net/switch/switch_launcher.h"
#include "net/switch/switch_port_backend.h"
#include "net/tap/bridge_port.h"
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
  if (const auto* bridge = std::get_if<BridgeNetOption>(&option)) {
    auto backend = open_bridge_port(bridge->bridge);
    if (!backend) return std::move(backend).error().with_context("--net bridge,br=" + bridge->bridge);
    return std::unique_ptr<NetBackend>(std::move(backend).value());
  }
  if (const auto* host_only = std::get_if<HostOnlyNetOption>(&option)) {
    auto backend = open_host_only_port(*host_only, host_only->mac.value_or(random_local_mac_address()));
    if (!backend) return std::move(backend).error().with_context("--net hostonly,name=" + host_only->name);
    return std::move(backend).value();
  }
  if (const auto* internal = std::get_if<InternalNetOption>(&option)) {
    const std::string context = "--net internal,name=" + internal->name;
    auto socket = connect_to_switch({internal->name, internal->dhcp, "", std::nullopt});
    if (!socket) return std::move(socket).error().with_context(context);
    // The machine gives every NIC a MAC before it opens the backend.
    const MacAddress mac = internal->mac.value_or(random_local_mac_address());
    auto backend = SwitchPortBackend::open(std::move(socket).value(),
                                           {.name = internal->name, .mac = mac, .dhcp = internal->dhcp});
    if (!backend) return std::move(backend).error().with_context(context);
    return std::unique_ptr<NetBackend>(std::move(backend).value());
  }
  return Error(ErrorCode::kInternal, "--net none has no backend; the machine plugs no NIC for it");
}

}  // namespace hostvisor::net
