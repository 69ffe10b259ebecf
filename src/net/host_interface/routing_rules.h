// Policy-routing rules (rtnetlink RTM_NEWRULE/RTM_DELRULE, what `ip rule`
// makes) that keep the host from routing for a privileged host-only
// network, whatever its forwarding settings. The bridge's own
// net.ipv4.conf.hv-NAME.forwarding=0 is not enough: writing
// net.ipv4.ip_forward (conf.all.forwarding) sets every interface's flag, so
// a host that turns forwarding on later would route VMs' packets onward.
//
// Three rules right after the kernel's `local` table (priority 0), so
// packets for the host's own addresses are delivered and nothing else is
// routed to or from the network:
//   pref P   iif lo to NETWORK lookup main   (the host's own packets to the VMs)
//   pref P+1 iif hv-NAME unreachable         (a VM's packets go no further than the host)
//   pref P+1 to NETWORK unreachable          (nothing from beyond is routed to the VMs)
// (P is kHostOnlyRulePriority.) Frames between VMs are bridged, never
// routed, and other traffic of the host matches none of them. Needs
// CAP_NET_ADMIN.
#pragma once

#include <string>

#include "base/result.h"
#include "net/ipv4_address.h"

namespace hostvisor::net {

inline constexpr uint32_t kHostOnlyRulePriority = 1;

// Adds the rules; one already there (a crashed server's) is kept.
Result<void> add_host_only_rules(const std::string& bridge, const Ipv4Network& network);
// Removes them; one that is not there is no error.
Result<void> remove_host_only_rules(const std::string& bridge, const Ipv4Network& network);

}  // namespace hostvisor::net
