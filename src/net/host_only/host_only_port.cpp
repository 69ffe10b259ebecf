#include "net/host_only/host_only_port.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>

#include "net/host_interface/free_subnet.h"
#include "net/host_interface/host_routes.h"
#include "net/host_interface/net_admin.h"
#include "net/host_only/host_only_server.h"
#include "net/switch/switch_launcher.h"
#include "net/tap/bridge_port.h"

namespace hostvisor::net {

namespace {
// The network a running bridge is on: its address and netmask.
Result<Ipv4Network> bridge_network(const std::string& bridge) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto read = [&](unsigned long request) -> Result<uint32_t> {
    ifreq req{};
    std::strncpy(req.ifr_name, bridge.c_str(), IFNAMSIZ - 1);
    if (::ioctl(sock.get(), request, &req) != 0) return Error::from_errno("reading the address of " + bridge);
    sockaddr_in in{};
    std::memcpy(&in, &req.ifr_addr, sizeof in);
    return ntohl(in.sin_addr.s_addr);
  };
  const uint32_t address = HV_TRY(read(SIOCGIFADDR));
  const uint32_t mask = HV_TRY(read(SIOCGIFNETMASK));
  return Ipv4Network{{address & mask}, static_cast<uint8_t>(__builtin_popcount(mask))};
}
}  // namespace

Result<std::unique_ptr<TapBackend>> open_host_only_port(const HostOnlyNetOption& option) {
  if (!has_net_admin())
    return Error(
        ErrorCode::kUnsupported,
        "a host-only network needs CAP_NET_ADMIN (its rootless form is not available yet): " + net_admin_hint());
  Ipv4Network network;
  if (option.network) {
    network = *option.network;
  } else {
    const auto routes = HV_TRY(read_host_routes());
    const auto free = choose_free_subnet(routes);
    if (!free)
      return Error(ErrorCode::kBusy, "every private /24 collides with a route of this host; choose one with net=");
    network = *free;
  }
  const std::string bridge = host_only_bridge_name(option.name);
  UniqueFd membership = HV_TRY(connect_to_switch({"hostonly-" + option.name, std::nullopt, "", network}));
  const Ipv4Network running = HV_TRY(bridge_network(bridge));
  if (option.network && !(running == *option.network))
    return Error(ErrorCode::kBusy, "host-only network " + option.name + " is running on " +
                                       format_ipv4_network(running) + "; leave net= out or give that");
  auto tap = HV_TRY(open_bridge_port(bridge));
  tap->keep_membership(std::move(membership));
  std::fprintf(stderr, "hostvisor: host-only network %s: the host is %s on %s (%s), VMs get addresses by DHCP\n",
               option.name.c_str(), format_ipv4_address(running.host(1)).c_str(), bridge.c_str(),
               format_ipv4_network(running).c_str());
  return tap;
}

}  // namespace hostvisor::net
