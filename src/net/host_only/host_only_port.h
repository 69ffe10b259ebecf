// --net hostonly,name=NAME[,net=CIDR][,hostfwd=...]: the VM's NIC on
// host-only network NAME, in one of two forms, chosen by the capability:
//
// - With CAP_NET_ADMIN, privileged: connects to the network's server
//   (starting it, under the network's lock, if none runs:
//   host_only_server.h), which owns the bridge hv-NAME with the host's
//   address and serves DHCP, then puts a new non-persistent tap of the VM's
//   own in the bridge. The connection stays open with the tap; when the VM
//   exits both go, and the server removes the bridge after the last VM.
//   hostfwd= is refused: the host reaches each VM at its address.
// - Without it, rootless: a port of the network's switch process, which
//   has a host gateway (host_gateway.h) at the host's address and a DHCP
//   server; the VM's hostfwd= forwards are asked of the gateway at open and
//   go when the VM does.
//
// A VM joins the form that runs: one with CAP_NET_ADMIN joins a rootless
// network as a switch port (a --jail run starts that form: its VM, in a
// user namespace of its own, holds no CAP_NET_ADMIN over the host's
// network); one without it cannot join the privileged form, and says so.
#pragma once

#include <memory>

#include "net/mac_address.h"
#include "net/net_backend.h"
#include "net/net_option.h"

namespace hostvisor::net {

// The subnet is net=, else a free private /24 (free_subnet.h) chosen when
// the network starts; a running network keeps its own, and a net= that
// differs is an error. Says on stderr which form runs and which subnet the
// host is on. `mac` is the NIC's (the rootless form's switch knows VMs by it).
Result<std::unique_ptr<NetBackend>> open_host_only_port(const HostOnlyNetOption& option, const MacAddress& mac);

// The subnet a network started for `option` gets: net=, else a free
// private /24 of this host's routes.
Result<Ipv4Network> host_only_subnet(const HostOnlyNetOption& option);

}  // namespace hostvisor::net
