// The backend a --net option asks for: a tap interface, user-mode NAT, or a
// port of an internal network's switch (started on first use).
// What the machine calls for each NIC; it then watches the backend's
// service_fd() on the event loop when there is one (NetBackend).
#pragma once

#include <memory>

#include "base/result.h"
#include "net/net_backend.h"
#include "net/net_option.h"

namespace hostvisor::net {

// Errors say which --net they are about. NoNetOption has no backend: the
// caller skips it.
Result<std::unique_ptr<NetBackend>> open_net_backend(const NetOption& option);

}  // namespace hostvisor::net
