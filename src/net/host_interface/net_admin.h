// Whether this process may change the host's network interfaces
// (CAP_NET_ADMIN in its network namespace), and what to tell a user whose
// process may not.
#pragma once

#include <string>

namespace hostvisor::net {

// CAP_NET_ADMIN in the effective set (root has it; so does a binary given
// it with setcap, or a process in a user namespace of its own), and a
// network namespace it reaches: one owned by this process's user namespace
// or one below. A process in a user namespace of its own that kept the
// host's network namespace (--jail) does not have it, though its effective
// set says so.
bool has_net_admin();

// "run hostvisor as root, or grant it CAP_NET_ADMIN once:
// sudo setcap cap_net_admin+ep /usr/local/bin/hostvisor", with this
// binary's own path.
std::string net_admin_hint();

}  // namespace hostvisor::net
