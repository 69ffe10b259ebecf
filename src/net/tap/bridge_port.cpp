#include "net/tap/bridge_port.h"

#include "net/host_interface/link_control.h"
#include "net/host_interface/net_admin.h"

namespace hostvisor::net {

Result<std::unique_ptr<TapBackend>> open_bridge_port(const std::string& bridge) {
  // The bridge first: a missing one is the likelier mistake, and its error
  // helps even a user without the capability.
  if (auto index = interface_index(bridge); !index) {
    if (index.error().code() == ErrorCode::kNotFound)
      return Error(ErrorCode::kNotFound, "there is no bridge " + bridge + ": create it with `ip link add " + bridge +
                                             " type bridge && ip link set " + bridge + " up`");
    return std::move(index).error();
  }
  if (!has_net_admin())
    return Error(ErrorCode::kUnsupported,
                 "putting a tap on bridge " + bridge + " needs CAP_NET_ADMIN: " + net_admin_hint());
  auto tap = HV_TRY(TapBackend::open("hvtap%d"));
  if (auto attached = attach_to_bridge(bridge, tap->interface_name()); !attached) {
    if (attached.error().code() == ErrorCode::kUnsupported)
      return Error(ErrorCode::kInvalidArgument, bridge +
                                                    " is not a bridge; name a bridge (`ip -d link show type "
                                                    "bridge` lists them)");
    return std::move(attached).error();
  }
  HV_TRY(set_link_up(tap->interface_name()));
  return tap;
}

}  // namespace hostvisor::net
