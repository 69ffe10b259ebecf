// --net hostonly,name=NAME[,net=CIDR]: the VM's NIC on host-only network
// NAME. With CAP_NET_ADMIN: connects to the network's server (starting it,
// under the network's lock, if none runs: host_only_server.h), which owns
// the bridge hv-NAME with the host's address and serves DHCP, then puts a
// new non-persistent tap of the VM's own in the bridge. The connection
// stays open with the tap; when the VM exits both go, and the server removes
// the bridge after the last VM.
#pragma once

#include <memory>

#include "net/net_option.h"
#include "net/tap/tap_backend.h"

namespace hostvisor::net {

// The subnet is net=, else a free private /24 (free_subnet.h) chosen when
// the network starts; a running network keeps its own, and a net= that
// differs is an error. Says on stderr which subnet the host is on.
// Without CAP_NET_ADMIN: an error (the rootless form is not built yet).
Result<std::unique_ptr<TapBackend>> open_host_only_port(const HostOnlyNetOption& option);

}  // namespace hostvisor::net
