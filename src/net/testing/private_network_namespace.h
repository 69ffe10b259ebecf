// Moves the calling process into a network namespace of its own, so a test
// can create taps, bridges and veths without touching the machine's
// interfaces: they vanish with the namespace when the process ends.
#pragma once

#include "base/result.h"

namespace hostvisor::net::testing {

// unshare(CLONE_NEWNET) as root; otherwise a user namespace too (where the
// kernel allows unprivileged ones), which gives CAP_NET_ADMIN inside. Brings
// the namespace's loopback up. Call it before the process starts threads.
Result<void> enter_private_network_namespace();

}  // namespace hostvisor::net::testing
