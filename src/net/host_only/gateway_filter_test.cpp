// The host gateway's filter: only IPv4 to the gateway's address and ARP
// about it reach the NAT; anything else (other addresses, broadcast,
// IPv6, malformed or cut frames) is kept from it.
#include "net/host_only/gateway_filter.h"

#include <gtest/gtest.h>

#include "net/testing/frames.h"

namespace hostvisor::net {
namespace {

using namespace testing;

constexpr MacAddress kVm{0x02, 0, 0, 0, 0, 0x0a}, kGatewayMac{0x52, 0x55, 0x0a, 0x5a, 0, 1};
constexpr Ipv4Address kGateway{0x0a5a0001}, kVmAddress{0x0a5a0042};

TEST(GatewayFilter, TakesIpv4ToTheGatewayAndArpAboutIt) {
  EXPECT_TRUE(
      gateway_takes_frame(icmp_echo_frame({kVm, kGatewayMac, kVmAddress, kGateway}, 1, 1, to_bytes("x")), kGateway));
  EXPECT_TRUE(gateway_takes_frame(
      tcp_frame({kVm, kGatewayMac, kVmAddress, kGateway}, {.destination_port = 22, .flags = kTcpSyn}), kGateway));
  EXPECT_TRUE(gateway_takes_frame(arp_frame(1, kVm, kVmAddress, {}, kGateway, kBroadcastMac), kGateway));
  EXPECT_TRUE(gateway_takes_frame(arp_frame(2, kVm, kVmAddress, kGatewayMac, kGateway, kGatewayMac), kGateway));
}

TEST(GatewayFilter, KeepsEverythingElseFromTheNat) {
  // Other destinations, even sent to the gateway's MAC: the host's
  // loopback, another VM, an address beyond the host, broadcast.
  for (const Ipv4Address to : {Ipv4Address{0x7f000001}, Ipv4Address{0x0a5a0043}, Ipv4Address{0x0a630002},
                               Ipv4Address{0x0a5a00ff}, Ipv4Address{0xffffffff}})
    EXPECT_FALSE(
        gateway_takes_frame(udp_frame({kVm, kGatewayMac, kVmAddress, to}, 1000, 53, to_bytes("query")), kGateway))
        << format_ipv4_address(to);
  // DHCP is the switch's own server's.
  EXPECT_FALSE(gateway_takes_frame(dhcp_frame(kVm, kDhcpDiscover, 1), kGateway));
  // ARP about anyone else, or an ARP operation that is neither request nor reply.
  EXPECT_FALSE(
      gateway_takes_frame(arp_frame(1, kVm, kVmAddress, {}, Ipv4Address{0x0a5a0043}, kBroadcastMac), kGateway));
  EXPECT_FALSE(gateway_takes_frame(arp_frame(3, kVm, kVmAddress, {}, kGateway, kBroadcastMac), kGateway));

  // Malformed: cut IPv4 and ARP, an IPv4 header length under 5, version 6
  // in an IPv4 EtherType, IPv6, a VLAN tag, a runt.
  const Bytes ping = icmp_echo_frame({kVm, kGatewayMac, kVmAddress, kGateway}, 1, 1, to_bytes("x"));
  EXPECT_FALSE(gateway_takes_frame(std::span<const uint8_t>(ping).first(14 + 19), kGateway));
  const Bytes arp = arp_frame(1, kVm, kVmAddress, {}, kGateway, kBroadcastMac);
  EXPECT_FALSE(gateway_takes_frame(std::span<const uint8_t>(arp).first(14 + 27), kGateway));
  Bytes bad = ping;
  bad[14] = 0x44;
  EXPECT_FALSE(gateway_takes_frame(bad, kGateway));
  bad[14] = 0x65;
  EXPECT_FALSE(gateway_takes_frame(bad, kGateway));
  for (const uint16_t ether_type : {0x86dd, 0x8100}) {
    bad = ping;
    bad[12] = static_cast<uint8_t>(ether_type >> 8);
    bad[13] = static_cast<uint8_t>(ether_type);
    EXPECT_FALSE(gateway_takes_frame(bad, kGateway)) << ether_type;
  }
  EXPECT_FALSE(gateway_takes_frame(std::span<const uint8_t>(ping).first(13), kGateway));
  EXPECT_FALSE(gateway_takes_frame({}, kGateway));
}

}  // namespace
}  // namespace hostvisor::net
