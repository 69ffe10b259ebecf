// --net bridge: a new, non-persistent tap ("hvtapN", the kernel picks N)
// made a port of an existing host bridge and brought up. Non-persistent, it
// vanishes with the process (and with it the bridge port), so nothing needs
// doing, nor privilege, at exit.
#pragma once

#include <memory>
#include <string>

#include "net/tap/tap_backend.h"

namespace hostvisor::net {

// Needs CAP_NET_ADMIN; without it, or when `bridge` is missing or is not a
// bridge, the error says what to do.
Result<std::unique_ptr<TapBackend>> open_bridge_port(const std::string& bridge);

}  // namespace hostvisor::net
