#include "net/host_only/gateway_filter.h"

namespace hostvisor::net {

namespace {
constexpr size_t kEthernetHeader = 14;
constexpr size_t kIpv4MinimumHeader = 20;
constexpr size_t kArpIpv4Size = 28;  // hardware Ethernet, protocol IPv4

uint16_t get16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>(b[at] << 8 | b[at + 1]); }
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint32_t>(get16(b, at)) << 16 | get16(b, at + 2);
}
}  // namespace

bool gateway_takes_frame(std::span<const uint8_t> frame, Ipv4Address gateway) {
  if (frame.size() < kEthernetHeader) return false;
  const uint16_t ether_type = get16(frame, 12);
  const auto payload = frame.subspan(kEthernetHeader);
  if (ether_type == 0x0800) {
    // Version 4, a header of at least 20 bytes, to the gateway.
    if (payload.size() < kIpv4MinimumHeader || (payload[0] >> 4) != 4 || (payload[0] & 0x0f) < 5) return false;
    return get32(payload, 16) == gateway.value;
  }
  if (ether_type == 0x0806) {
    // Ethernet/IPv4 ARP, a request or a reply, whose target is the gateway.
    if (payload.size() < kArpIpv4Size || get16(payload, 0) != 1 || get16(payload, 2) != 0x0800 || payload[4] != 6 ||
        payload[5] != 4)
      return false;
    const uint16_t operation = get16(payload, 6);
    if (operation != 1 && operation != 2) return false;
    return get32(payload, 24) == gateway.value;
  }
  // IPv6, VLAN tags and everything else: the gateway speaks IPv4 only.
  return false;
}

}  // namespace hostvisor::net
