// What a sandboxed process may do with TCP ports (Landlock ABI 4 and
// later): bind only the ports listed (or any), and connect anywhere or
// nowhere.
// UDP, unix sockets and raw sockets are not TCP and are not touched here.
#pragma once

#include <cstdint>
#include <vector>

namespace hostvisor::sandbox {

struct TcpRules {
  std::vector<uint16_t> bind_ports;  // local ports it may bind (and so listen on)
  bool bind_any = false;             // bind any port; bind_ports is then not needed
  bool connect_any = false;          // connect to any port; false: to none
};

}  // namespace hostvisor::sandbox
