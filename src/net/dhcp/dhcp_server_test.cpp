#include "net/dhcp/dhcp_server.h"

#include <gtest/gtest.h>

#include "net/testing/frames.h"

namespace hostvisor::net::dhcp {
namespace {

using namespace hostvisor::net::testing;

constexpr MacAddress kVm1{0x02, 0x11, 0, 0, 0, 1}, kVm2{0x02, 0x11, 0, 0, 0, 2};
const Clock::time_point kNow{};
const Ipv4Network kNet{{0x0a090000}, 24};  // 10.9.0.0/24
const Ipv4Address kServer{0x0a090001};

DhcpServer make_server(Ipv4Network network = kNet) {
  auto server = DhcpServer::create({.network = network});
  EXPECT_TRUE(server.ok());
  return std::move(server).value();
}

struct Answer {
  ParsedFrame frame;
  DhcpReply dhcp;
};

std::optional<Answer> ask(DhcpServer& server, const Bytes& frame, Clock::time_point now = kNow) {
  auto out = server.handle_frame(frame, now);
  if (!out) return std::nullopt;
  auto parsed = parse_frame(*out);
  EXPECT_TRUE(parsed);
  if (!parsed) return std::nullopt;
  EXPECT_TRUE(parsed->checksums_ok);
  EXPECT_EQ(parsed->source_port, kServerPort);
  EXPECT_EQ(parsed->destination_port, kClientPort);
  auto dhcp = parse_dhcp(parsed->payload);
  EXPECT_TRUE(dhcp);
  if (!dhcp) return std::nullopt;
  return Answer{*parsed, *dhcp};
}

// DISCOVER then REQUEST: the address acknowledged.
Ipv4Address lease(DhcpServer& server, const MacAddress& mac, uint32_t xid = 1) {
  auto offer = ask(server, dhcp_frame(mac, kDhcpDiscover, xid));
  EXPECT_TRUE(offer);
  if (!offer) return {};
  EXPECT_EQ(offer->dhcp.message_type, kDhcpOffer);
  auto ack = ask(server, dhcp_frame(mac, kDhcpRequest, xid + 1, offer->dhcp.your_address, kServer));
  EXPECT_TRUE(ack);
  if (!ack) return {};
  EXPECT_EQ(ack->dhcp.message_type, kDhcpAck);
  EXPECT_EQ(ack->dhcp.your_address, offer->dhcp.your_address);
  return ack->dhcp.your_address;
}

// A client message from a client that has `ciaddr` (RELEASE, INFORM, a renewal).
Bytes from_address(Bytes frame, Ipv4Address ciaddr) {
  const size_t at = 14 + 20 + 8 + 12;
  for (int i = 0; i < 4; ++i) frame[at + i] = static_cast<uint8_t>(ciaddr.value >> (24 - 8 * i));
  return frame;
}

TEST(DhcpServer, OffersAndAcknowledgesALeaseWithNoRouterOrDns) {
  DhcpServer server = make_server();
  auto offer = ask(server, dhcp_frame(kVm1, kDhcpDiscover, 0x1234));
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->dhcp.message_type, kDhcpOffer);
  EXPECT_EQ(offer->dhcp.transaction, 0x1234u);
  EXPECT_TRUE(kNet.contains(offer->dhcp.your_address));
  EXPECT_NE(offer->dhcp.your_address, kServer);
  EXPECT_EQ(offer->dhcp.subnet_mask, Ipv4Address{0xffffff00});
  EXPECT_EQ(offer->dhcp.server, kServer);
  EXPECT_FALSE(offer->dhcp.router) << "an internal network has no gateway";
  EXPECT_FALSE(offer->dhcp.dns) << "an internal network has no resolver";
  // The client asked for broadcast replies.
  EXPECT_EQ(offer->frame.destination_mac, kBroadcastMac);
  EXPECT_EQ(offer->frame.source, kServer);

  auto ack = ask(server, dhcp_frame(kVm1, kDhcpRequest, 0x1235, offer->dhcp.your_address, kServer));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->dhcp.message_type, kDhcpAck);
  EXPECT_EQ(ack->dhcp.your_address, offer->dhcp.your_address);
  EXPECT_EQ(server.lease_count(), 1u);
}

// A host-only network's host address (reserved) is never leased, whatever
// the client asks for, even when it is the last free one.
TEST(DhcpServer, NeverLeasesAReservedAddress) {
  const Ipv4Network small{{0x0a090000}, 30};  // hosts .1 and .2
  auto created = DhcpServer::create({.network = small, .server = Ipv4Address{0x0a090002}, .reserved = {{0x0a090001}}});
  ASSERT_TRUE(created.ok());
  DhcpServer server = std::move(created).value();
  auto offer = ask(server, dhcp_frame(kVm1, kDhcpDiscover, 7));
  EXPECT_FALSE(offer) << "offered " << format_ipv4_address(offer->dhcp.your_address);
  auto request = ask(server, dhcp_frame(kVm1, kDhcpRequest, 8, Ipv4Address{0x0a090001}, Ipv4Address{0x0a090002}));
  ASSERT_TRUE(request);
  EXPECT_NE(request->dhcp.message_type, kDhcpAck);
}

TEST(DhcpServer, AddressesAreStablePerMacAcrossServersAndDistinct) {
  DhcpServer first = make_server();
  const Ipv4Address a1 = lease(first, kVm1), a2 = lease(first, kVm2);
  EXPECT_NE(a1, a2);
  EXPECT_EQ(lease(first, kVm1, 10), a1) << "a client asking again keeps its lease";
  DhcpServer second = make_server();
  EXPECT_EQ(lease(second, kVm1), a1) << "a new server gives a MAC the same address";
}

TEST(DhcpServer, NaksAnAddressHeldByAnotherAndOneOutsideTheNetwork) {
  DhcpServer server = make_server();
  const Ipv4Address a1 = lease(server, kVm1);
  auto nak = ask(server, dhcp_frame(kVm2, kDhcpRequest, 5, a1));
  ASSERT_TRUE(nak);
  EXPECT_EQ(nak->dhcp.message_type, 6);
  EXPECT_EQ(nak->frame.destination_mac, kBroadcastMac);
  auto outside = ask(server, dhcp_frame(kVm2, kDhcpRequest, 6, Ipv4Address{0x0a0a0005}));
  ASSERT_TRUE(outside);
  EXPECT_EQ(outside->dhcp.message_type, 6);
  // A REQUEST naming another server is not ours to answer.
  EXPECT_FALSE(
      server.handle_frame(dhcp_frame(kVm2, kDhcpRequest, 7, Ipv4Address{0x0a090009}, Ipv4Address{0x0a090002}), kNow));
}

TEST(DhcpServer, ReleaseFreesTheAddressAndRenewalIsUnicast) {
  DhcpServer server = make_server(Ipv4Network{{0x0a090000}, 30});  // one client address: .2
  const Ipv4Address only = lease(server, kVm1);
  EXPECT_EQ(only, Ipv4Address{0x0a090002});
  EXPECT_FALSE(server.handle_frame(dhcp_frame(kVm2, kDhcpDiscover, 9), kNow)) << "the pool is full";

  // A renewal from the client's address: acknowledged to that address.
  auto renew = ask(server, from_address(dhcp_frame(kVm1, kDhcpRequest, 11), only));
  ASSERT_TRUE(renew);
  EXPECT_EQ(renew->dhcp.message_type, kDhcpAck);
  EXPECT_EQ(renew->frame.destination_mac, kVm1);
  EXPECT_EQ(renew->frame.destination, only);

  EXPECT_FALSE(server.handle_frame(from_address(dhcp_frame(kVm1, 7, 12, std::nullopt, kServer), only), kNow));
  EXPECT_EQ(server.lease_count(), 0u);
  EXPECT_EQ(lease(server, kVm2), only);
}

// Found by the dhcp_server fuzz target: a DISCOVER naming a free address
// was offered (and bound) before the table's bound was looked at.
TEST(DhcpServer, ClientsAskingForFreeAddressesStayWithinTheLeaseBound) {
  auto created = DhcpServer::create({.network = kNet, .max_leases = 2});
  ASSERT_TRUE(created.ok());
  DhcpServer server = std::move(created).value();
  lease(server, kVm1);
  lease(server, kVm2);
  for (uint8_t i = 3; i < 40; ++i) {
    const MacAddress mac{0x02, 0x11, 0, 0, 0, i};
    EXPECT_FALSE(server.handle_frame(dhcp_frame(mac, kDhcpDiscover, i, Ipv4Address{0x0a090000u + 100 + i}), kNow))
        << "the table is full: no offer";
    EXPECT_FALSE(server.address_for(mac, kNow));
    EXPECT_EQ(server.lease_count(), 2u);
  }
  // The clients that hold leases keep them, asking by address or not.
  EXPECT_EQ(lease(server, kVm1, 50), lease(server, kVm1, 60));
  EXPECT_EQ(server.lease_count(), 2u);
}

TEST(DhcpServer, ExpiredLeasesAreReused) {
  DhcpServer server = make_server(Ipv4Network{{0x0a090000}, 30});
  lease(server, kVm1);
  auto offer = ask(server, dhcp_frame(kVm2, kDhcpDiscover, 3), kNow + std::chrono::hours(2));
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->dhcp.your_address, Ipv4Address{0x0a090002});
}

TEST(DhcpServer, InformGetsTheConfigurationWithoutALease) {
  DhcpServer server = make_server();
  auto ack = ask(server, from_address(dhcp_frame(kVm1, 8, 4), Ipv4Address{0x0a090063}));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->dhcp.message_type, kDhcpAck);
  EXPECT_EQ(ack->dhcp.your_address, Ipv4Address{});
  EXPECT_EQ(ack->frame.destination, Ipv4Address{0x0a090063});
  EXPECT_EQ(server.lease_count(), 0u);
}

TEST(DhcpServer, RouterAndDnsWhenConfigured) {
  auto server =
      DhcpServer::create({.network = kNet, .router = Ipv4Address{0x0a090001}, .dns = {Ipv4Address{0x0a090001}}});
  ASSERT_TRUE(server.ok());
  auto offer = ask(*server, dhcp_frame(kVm1, kDhcpDiscover, 1));
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->dhcp.router, Ipv4Address{0x0a090001});
  EXPECT_EQ(offer->dhcp.dns, Ipv4Address{0x0a090001});
}

TEST(DhcpServer, AnswersArpForItsOwnAddressOnly) {
  DhcpServer server = make_server();
  auto reply = server.handle_frame(arp_frame(1, kVm1, {0x0a090005}, {}, kServer, kBroadcastMac), kNow);
  ASSERT_TRUE(reply);
  auto parsed = parse_frame(*reply);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->arp_operation, 2);
  EXPECT_EQ(parsed->arp_sender, kServer);
  EXPECT_EQ(parsed->arp_sender_mac, server.server_mac());
  EXPECT_EQ(parsed->destination_mac, kVm1);
  EXPECT_FALSE(server.handle_frame(arp_frame(1, kVm1, {0x0a090005}, {}, {0x0a090007}, kBroadcastMac), kNow));
}

TEST(DhcpServer, EveryTruncationAndCorruptionOfARequestIsRefusedQuietly) {
  DhcpServer server = make_server();
  const Bytes discover = dhcp_frame(kVm1, kDhcpDiscover, 1);
  for (size_t n = 0; n < discover.size(); ++n) {
    // Cut before the options' end: either nothing or a valid offer, never a crash.
    (void)server.handle_frame(std::span<const uint8_t>(discover).first(n), kNow);
  }
  Bytes bad_option = discover;
  bad_option[14 + 20 + 8 + 240 + 1] = 200;  // option 53's length runs past the end
  EXPECT_FALSE(server.handle_frame(bad_option, kNow));
  Bytes reply_op = discover;
  reply_op[14 + 20 + 8] = 2;  // a BOOTREPLY: not for a server
  EXPECT_FALSE(server.handle_frame(reply_op, kNow));
}

// What busybox 1.35's udhcpc in the default guest sent to the switch's DHCP
// server (10.79.0.0/24) as it booted, captured from the segment: a DISCOVER
// and the REQUEST for the address offered (with options 57, 55, 60 and 61).
constexpr const char* kUdhcpcDiscover =
    "ffffffffffff02790000000108004500014800000000401179a600000000ffffffff00440043013435c2010106008e8f"
    "f80800000000000000000000000000000000000000000279000000010000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000063825363350101390202"
    "4037070103060c0f1c2a3c0c756468637020312e33352e303d0701027900000001ff0000000000000000000000000000"
    "000000000000";
constexpr const char* kUdhcpcRequest =
    "ffffffffffff02790000000108004500014800000000401179a600000000ffffffff0044004301347c45010106008e8f"
    "f80800000000000000000000000000000000000000000279000000010000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000006382536335010332040a"
    "4f001036040a4f00013902024037070103060c0f1c2a3c0c756468637020312e33352e303d0701027900000001ff0000"
    "000000000000";

Bytes from_hex(const char* hex) {
  Bytes out;
  for (const char* p = hex; p[0] && p[1]; p += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(p, 2), nullptr, 16)));
  return out;
}

TEST(DhcpServer, AnswersWhatBusyboxUdhcpcReallySends) {
  auto server = DhcpServer::create({.network = {{0x0a4f0000}, 24}});
  ASSERT_TRUE(server.ok());
  const Bytes discover = from_hex(kUdhcpcDiscover), request = from_hex(kUdhcpcRequest);
  ASSERT_EQ(discover.size(), 342u);
  auto offer = ask(*server, discover);
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->dhcp.message_type, kDhcpOffer);
  // The same MAC gets the same address from any server: the one this
  // REQUEST (option 50) asks for.
  EXPECT_EQ(offer->dhcp.your_address, Ipv4Address{0x0a4f0010});
  EXPECT_EQ(offer->frame.destination_mac, (MacAddress{0x02, 0x79, 0, 0, 0, 1})) << "udhcpc did not ask for broadcast";
  auto ack = ask(*server, request);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->dhcp.message_type, kDhcpAck);
  EXPECT_EQ(ack->dhcp.your_address, Ipv4Address{0x0a4f0010});
  EXPECT_EQ(ack->dhcp.transaction, offer->dhcp.transaction);
}

TEST(DhcpServer, RefusesNetworksWithNoRoom) {
  EXPECT_FALSE(DhcpServer::create({.network = {{0x0a090000}, 31}}).ok());
  EXPECT_FALSE(DhcpServer::create({.network = kNet, .server = Ipv4Address{0x0b000001}}).ok());
}

}  // namespace
}  // namespace hostvisor::net::dhcp
