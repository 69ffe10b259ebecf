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
#include "net/host_interface/link_control.h"
#include "net/host_interface/net_admin.h"
#include "net/host_only/host_only_server.h"
#include "net/switch/switch_launcher.h"
#include "net/switch/switch_port_backend.h"
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

Result<std::unique_ptr<NetBackend>> open_rootless_port(const HostOnlyNetOption& option, const Ipv4Network& network,
                                                       const MacAddress& mac) {
  UniqueFd socket =
      HV_TRY(connect_to_switch({"hostonly-" + option.name, std::nullopt, "", network, /*rootless=*/true}));
  auto opened = SwitchPortBackend::open(
      std::move(socket),
      {.name = option.name, .mac = mac, .dhcp = option.network, .host_only = true, .forwards = option.forwards});
  // The privileged form runs (its bridge is there), started by a VM with
  // CAP_NET_ADMIN over the host's network, which this one lacks: a VM
  // under --jail, in a user namespace of its own, cannot put a tap on it.
  if (!opened && interface_index(host_only_bridge_name(option.name)).ok())
    return Error(ErrorCode::kUnsupported,
                 "host-only network " + option.name + " runs in its privileged form (bridge " +
                     host_only_bridge_name(option.name) +
                     "), which needs CAP_NET_ADMIN over the host's network to join (a VM under --jail has none): "
                     "run this VM without --jail, or stop that network's VMs and start it from a --jail run first");
  auto port = HV_TRY(std::move(opened));
  const auto running = HV_TRY(parse_ipv4_network(port->switch_network()));
  std::string forwards;
  for (const HostForward& forward : port->forwards()) forwards += ", hostfwd=" + format_host_forward(forward);
  std::fprintf(stderr,
               "hostvisor: host-only network %s: the host is %s (%s), VMs get addresses by DHCP (rootless form: no "
               "CAP_NET_ADMIN; the host's gateway reaches its services on 127.0.0.1)%s\n",
               option.name.c_str(), format_ipv4_address(running.host(1)).c_str(), format_ipv4_network(running).c_str(),
               forwards.c_str());
  return std::unique_ptr<NetBackend>(std::move(port));
}

Result<std::unique_ptr<NetBackend>> open_privileged_port(const HostOnlyNetOption& option, const Ipv4Network& network,
                                                         const MacAddress& mac) {
  const std::string bridge = host_only_bridge_name(option.name);
  if (!option.forwards.empty())
    return Error(ErrorCode::kInvalidArgument,
                 "hostfwd= is for the rootless form; with CAP_NET_ADMIN the host reaches each VM at its own address "
                 "on " +
                     bridge + ": leave hostfwd= out");
  UniqueFd membership = HV_TRY(connect_to_switch({"hostonly-" + option.name, std::nullopt, "", network}));
  // No bridge: what runs is the rootless form, which a --jail run started
  // (its VM holds no CAP_NET_ADMIN over the host's network, so the process
  // outside its jail started that form). Join it as it is.
  if (auto index = interface_index(bridge); !index && index.error().code() == ErrorCode::kNotFound) {
    membership = UniqueFd();
    return open_rootless_port(option, network, mac);
  }
  const Ipv4Network running = HV_TRY(bridge_network(bridge));
  if (option.network && !(running == *option.network))
    return Error(ErrorCode::kBusy, "host-only network " + option.name + " is running on " +
                                       format_ipv4_network(running) + "; leave net= out or give that");
  auto tap = HV_TRY(open_bridge_port(bridge));
  tap->keep_membership(std::move(membership));
  std::fprintf(stderr,
               "hostvisor: host-only network %s: the host is %s on %s (%s), VMs get addresses by DHCP (privileged "
               "form: CAP_NET_ADMIN, a host bridge)\n",
               option.name.c_str(), format_ipv4_address(running.host(1)).c_str(), bridge.c_str(),
               format_ipv4_network(running).c_str());
  return std::unique_ptr<NetBackend>(std::move(tap));
}

}  // namespace

Result<Ipv4Network> host_only_subnet(const HostOnlyNetOption& option) {
  if (option.network) return *option.network;
  const auto routes = HV_TRY(read_host_routes());
  const auto free = choose_free_subnet(routes);
  if (!free)
    return Error(ErrorCode::kBusy, "every private /24 collides with a route of this host; choose one with net=");
  return *free;
}

Result<std::unique_ptr<NetBackend>> open_host_only_port(const HostOnlyNetOption& option, const MacAddress& mac) {
  const Ipv4Network network = HV_TRY(host_only_subnet(option));
  if (has_net_admin()) return open_privileged_port(option, network, mac);
  return open_rootless_port(option, network, mac);
}

}  // namespace hostvisor::net
