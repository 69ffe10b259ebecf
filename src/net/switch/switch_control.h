// The offload negotiation between a hostvisor port and the switch, in
// frames a plain peer never sends. A port that wants virtio-net headers
// sends a Hello as its very first frame; the switch answers with a Welcome
// as the first frame toward that port, and from then on every frame in both
// directions is a 12-byte virtio-net header (net_backend.h) followed by the
// Ethernet frame, so checksum offloads and 64 KiB TSO frames cross
// unsegmented. A QEMU `-netdev stream` peer sends ordinary Ethernet first,
// so it stays a plain port and the switch segments and checksums for it.
// Later, a headered port says what it accepts in the headers toward it
// (ReceiveOffloads: what its guest's driver took) with an Offloads frame.
//
// Control frames use EtherType 0x88B5 (IEEE 802 local experimental 1) to
// a locally administered multicast address, and start with a 16-byte magic;
// the switch never forwards one. The Hello names the NIC's MAC: two runs of
// the same VM derive the same stable MAC, and the switch refuses a second
// port with a MAC another hostvisor port already announced (the VM then
// says to give it mac=). The Welcome also says which DHCP network the
// switch serves, so a VM that asked for another one gets a clear error.
//
// A rootless host-only network's switch has a host gateway (net/host_only/
// host_gateway.h) and says so in its Welcome. A port there asks for host
// port forwards with one Forward frame each, after the Welcome; the switch
// answers each with a ForwardResult (empty text: in place; else why not).
// A forward lives as long as the port's connection: the switch removes the
// port's forwards when it leaves, so a VM that is killed leaves none behind.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "net/host_forward.h"
#include "net/mac_address.h"
#include "net/net_backend.h"

namespace hostvisor::net {

inline constexpr uint16_t kSwitchControlEtherType = 0x88b5;
inline constexpr uint8_t kSwitchControlVersion = 1;

enum class SwitchControlType : uint8_t {
  kHello = 1,          // port -> switch, first frame: "I speak headers"
  kWelcome = 2,        // switch -> port, first frame: "so do I, from now on"
  kOffloads = 3,       // port -> switch: what the headers toward me may ask
  kForward = 4,        // port -> switch: forward a host port to me (a host gateway's switch)
  kForwardResult = 5,  // switch -> port: the Forward's outcome
};

// The longest ForwardResult text; longer ones are cut.
inline constexpr size_t kMaxSwitchControlText = 200;

struct SwitchControl {
  SwitchControlType type = SwitchControlType::kHello;
  ReceiveOffloads offloads{};
  MacAddress mac{};         // Hello: the NIC's MAC
  bool mac_in_use = false;  // Welcome: refused, another port has that MAC
  std::string dhcp;         // Welcome: the switch's dhcp= network, "" for none
  bool gateway = false;     // Welcome: the switch has a host gateway (takes Forwards)
  HostForward forward{};    // Forward, ForwardResult: the forward (no guest address: the port's own)
  std::string text{};       // ForwardResult: "" when the forward is in place, else why not
};

// The Ethernet frame carrying `control`.
std::vector<uint8_t> encode_switch_control(const SwitchControl& control);
// A control frame's content; nothing for any other frame (or a malformed one).
std::optional<SwitchControl> decode_switch_control(std::span<const uint8_t> frame);

}  // namespace hostvisor::net
