// A port forward from the host to the guest, in QEMU's hostfwd= syntax:
//   PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT     (PROTO: tcp or udp)
// An empty HOSTADDR means 127.0.0.1, not every interface (QEMU binds
// 0.0.0.0): a VM's port is reachable from other machines only when the user
// names an address such as 0.0.0.0. An empty GUESTADDR means the guest's
// first DHCP address.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "net/ipv4_address.h"

namespace hostvisor::net {

enum class ForwardProtocol { kTcp, kUdp };

struct HostForward {
  ForwardProtocol protocol = ForwardProtocol::kTcp;
  Ipv4Address host_address{0x7f000001};  // 127.0.0.1
  uint16_t host_port = 0;
  std::optional<Ipv4Address> guest_address;  // absent: the first DHCP address
  uint16_t guest_port = 0;
  friend bool operator==(const HostForward&, const HostForward&) = default;
};

// Parses the value of hostfwd=; errors say which part is wrong.
Result<HostForward> parse_host_forward(const std::string& text);
// Back to the syntax above, with every address written out.
std::string format_host_forward(const HostForward& forward);

}  // namespace hostvisor::net
