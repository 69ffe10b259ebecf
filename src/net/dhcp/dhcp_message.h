// DHCP (RFC 2131, options RFC 2132) as it travels on a segment: a BOOTP
// message in UDP in IPv4 in Ethernet. Parses client requests from untrusted
// frames (every length checked, nothing allocated beyond the frame's own
// size) and builds the server's replies as whole frames with checksums.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "net/ipv4_address.h"
#include "net/mac_address.h"

namespace hostvisor::net::dhcp {

enum class MessageType : uint8_t {
  kDiscover = 1,
  kOffer = 2,
  kRequest = 3,
  kDecline = 4,
  kAck = 5,
  kNak = 6,
  kRelease = 7,
  kInform = 8,
};

inline constexpr uint16_t kServerPort = 67;
inline constexpr uint16_t kClientPort = 68;

// A client's message, as far as a server needs it.
struct ClientMessage {
  MessageType type = MessageType::kDiscover;
  uint32_t transaction = 0;
  uint16_t flags = 0;                    // bit 15: the client wants broadcast replies
  MacAddress client_mac{};               // chaddr
  Ipv4Address client_address{};          // ciaddr
  Ipv4Address relay_address{};           // giaddr
  std::optional<Ipv4Address> requested;  // option 50
  std::optional<Ipv4Address> server;     // option 54
};

// A DHCP client message in an Ethernet frame (to UDP port 67); nothing for
// any other frame, a reply, or a malformed one.
std::optional<ClientMessage> parse_client_frame(std::span<const uint8_t> frame);

// What a server puts in its reply.
struct ServerReply {
  MessageType type = MessageType::kOffer;
  const ClientMessage* request = nullptr;  // transaction, chaddr, flags, giaddr come from it
  Ipv4Address your_address{};              // yiaddr (0 for a NAK and an INFORM's ACK)
  Ipv4Address server{};                    // option 54 and the IP source
  MacAddress server_mac{};
  std::optional<uint32_t> lease_seconds;   // options 51, 58, 59
  std::optional<Ipv4Address> subnet_mask;  // option 1
  std::optional<Ipv4Address> broadcast;    // option 28
  std::optional<Ipv4Address> router;       // option 3
  std::vector<Ipv4Address> dns;            // option 6
  // Where the frame goes: a MAC and IP address (broadcast or the client's).
  MacAddress destination_mac{};
  Ipv4Address destination{};
};

std::vector<uint8_t> build_reply_frame(const ServerReply& reply);

}  // namespace hostvisor::net::dhcp
