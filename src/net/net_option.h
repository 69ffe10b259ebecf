// The --net option: how a virtio-net device reaches a network.
//   --net tap,ifname=NAME[,mac=52:54:00:12:34:56]
// (bridged and host-only networking put the tap on a bridge on the host;
// user-mode NAT comes later.)
#pragma once

#include <optional>
#include <string>

#include "base/result.h"
#include "net/mac_address.h"

namespace hostvisor::net {

struct NetOption {
  std::string ifname;             // the tap interface
  std::optional<MacAddress> mac;  // random locally administered if absent
};

Result<NetOption> parse_net_option(const std::string& text);

}  // namespace hostvisor::net
