// The --net option: how a virtio-net device reaches a network. One type per
// mode:
//   --net user[,hostfwd=PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
//             [,net=CIDR][,ipv6=on|off][,restrict=on|off][,mac=MAC][,rate=BYTES]
//   --net tap,ifname=NAME[,mac=MAC][,rate=BYTES]
//   --net bridge,br=BRIDGE[,mac=MAC][,rate=BYTES]
//   --net internal,name=NAME[,dhcp=CIDR][,mac=MAC][,rate=BYTES]
//   --net hostonly,name=NAME[,net=CIDR][,hostfwd=...]...[,mac=MAC][,rate=BYTES]
//   --net none
// A first field that is not a mode (or nothing at all) means user:
// "--net hostfwd=tcp::2222-:22" is user-mode NAT with one forward.
// rate= is bytes per second (suffixes K, M, G; an optional "/s").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/result.h"
#include "net/host_forward.h"
#include "net/ipv4_address.h"
#include "net/mac_address.h"

namespace hostvisor::net {

// User-mode NAT (libslirp): no privileges; the guest reaches the host and
// beyond through the host's own sockets, the host reaches the guest through
// the forwards.
struct UserNetOption {
  std::vector<HostForward> forwards{};
  // As QEMU: the gateway is host 2 of the network, DNS host 3, DHCP hands
  // out addresses from host 15.
  Ipv4Network network{{0x0a000200}, 24};  // 10.0.2.0/24
  bool ipv6 = true;
  bool restrict = false;  // the guest reaches nothing but the forwards
  std::optional<MacAddress> mac;
  std::optional<uint64_t> rate;  // bytes per second
};

// A Linux tap interface (needs CAP_NET_ADMIN or a tap made for the user).
struct TapNetOption {
  std::string ifname;
  std::optional<MacAddress> mac;
  std::optional<uint64_t> rate;  // bytes per second
};

// A new tap, made a port of the existing host bridge `bridge` (needs
// CAP_NET_ADMIN): the guest is on the bridge's LAN.
struct BridgeNetOption {
  std::string bridge;
  std::optional<MacAddress> mac;
  std::optional<uint64_t> rate;  // bytes per second
};

// A VM-to-VM segment with no host and no outside: a port of network NAME's
// switch process (net/switch/), started by the first VM that names it. No
// privileges.
struct InternalNetOption {
  std::string name;
  std::optional<Ipv4Network> dhcp;  // a DHCP server on the segment, in the switch
  std::optional<MacAddress> mac;
  std::optional<uint64_t> rate;  // bytes per second
};

// Host-only network NAME (net/host_only/): the host and the VMs on it reach
// each other, and nothing beyond. A host bridge with CAP_NET_ADMIN, a switch
// with a host gateway without it (where hostfwd= brings host ports in).
struct HostOnlyNetOption {
  std::string name;                    // at most 12 characters: the bridge is hv-NAME
  std::optional<Ipv4Network> network;  // none: a free private /24
  std::optional<MacAddress> mac;
  std::optional<uint64_t> rate;  // bytes per second
  // The rootless form's forwards; no guest address: this VM's own.
  std::vector<HostForward> forwards{};
};

inline constexpr size_t kLongestHostOnlyName = 12;

// No NIC at all.
struct NoNetOption {};

using NetOption =
    std::variant<UserNetOption, TapNetOption, NoNetOption, InternalNetOption, BridgeNetOption, HostOnlyNetOption>;

// Errors are one line: "--net TEXT: PART: what is wrong (expected ...)".
Result<NetOption> parse_net_option(const std::string& text);

// "user", "tap", "none", "internal", "bridge", "hostonly".
std::string_view net_mode_name(const NetOption& option);

// The smallest network a user-mode NAT accepts: it needs the gateway (.2),
// DNS (.3) and sixteen DHCP addresses from .15 below its broadcast address.
inline constexpr uint8_t kLongestUserPrefix = 26;

}  // namespace hostvisor::net
