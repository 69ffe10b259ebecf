#include "net/net_option.h"

#include <gtest/gtest.h>

namespace hostvisor::net {
namespace {

TEST(NetOption, ParsesTapWithNameAndMac) {
  auto o = parse_net_option("tap,ifname=hv0,mac=52:54:00:12:34:56,rate=10M");
  ASSERT_TRUE(o.ok()) << o.error().message();
  const auto& tap = std::get<TapNetOption>(*o);
  EXPECT_EQ(tap.ifname, "hv0");
  ASSERT_TRUE(tap.mac.has_value());
  EXPECT_EQ(format_mac_address(*tap.mac), "52:54:00:12:34:56");
  EXPECT_EQ(tap.rate, 10u << 20);
  auto plain = parse_net_option("tap,ifname=tap7");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(std::get<TapNetOption>(*plain).mac.has_value());
  EXPECT_EQ(net_mode_name(*plain), "tap");
}

TEST(NetOption, RejectsBadTapInputWithTheExpectedForm) {
  for (const char* bad : {"tap", "tap,ifname=", "tap,ifname=averyveryverylongname", "tap,ifname=a,mac=zz",
                          "tap,ifname=a,speed=10", "tap,ifname", "tap,ifname=a,rate=0"}) {
    auto o = parse_net_option(bad);
    EXPECT_FALSE(o.ok()) << bad;
    if (!o.ok()) EXPECT_NE(o.error().message().find("tap,ifname=NAME"), std::string::npos) << bad;
  }
}

TEST(NetOption, ParsesBridgeWithItsKeys) {
  auto o = parse_net_option("bridge,br=br0,mac=52:54:00:12:34:57,rate=1M");
  ASSERT_TRUE(o.ok()) << o.error().message();
  const auto& bridge = std::get<BridgeNetOption>(*o);
  EXPECT_EQ(bridge.bridge, "br0");
  ASSERT_TRUE(bridge.mac.has_value());
  EXPECT_EQ(format_mac_address(*bridge.mac), "52:54:00:12:34:57");
  EXPECT_EQ(bridge.rate, 1u << 20);
  EXPECT_EQ(net_mode_name(*o), "bridge");
  EXPECT_FALSE(std::get<BridgeNetOption>(parse_net_option("bridge,br=lan").value()).mac.has_value());
}

TEST(NetOption, RejectsBadBridgeInputWithTheExpectedForm) {
  for (const char* bad :
       {"bridge", "bridge,br=", "bridge,br=a-name-too-long-for-it", "bridge,br=a/b", "bridge,br=a:1", "bridge,br=..",
        "bridge,ifname=br0", "bridge,br=br0,mac=01:00:5e:00:00:01", "bridge,br=br0,rate=0", "bridge,br"}) {
    auto o = parse_net_option(bad);
    EXPECT_FALSE(o.ok()) << bad;
    if (!o.ok()) {
      EXPECT_NE(o.error().message().find("bridge,br=BRIDGE"), std::string::npos) << o.error().message();
      EXPECT_EQ(o.error().message().find('\n'), std::string::npos) << o.error().message();
    }
  }
  EXPECT_NE(parse_net_option("brigde,br=br0").error().message().find("user, tap, internal, hostonly, bridge and none"),
            std::string::npos);
}

TEST(NetOption, ParsesHostOnly) {
  auto o = parse_net_option("hostonly,name=lab,net=192.168.90.0/24,mac=52:54:00:12:34:58,rate=2M");
  ASSERT_TRUE(o.ok()) << o.error().message();
  const auto& host_only = std::get<HostOnlyNetOption>(*o);
  EXPECT_EQ(host_only.name, "lab");
  ASSERT_TRUE(host_only.network);
  EXPECT_EQ(format_ipv4_network(*host_only.network), "192.168.90.0/24");
  EXPECT_EQ(host_only.rate, 2u << 20);
  EXPECT_EQ(net_mode_name(*o), "hostonly");
  EXPECT_FALSE(std::get<HostOnlyNetOption>(parse_net_option("hostonly,name=x").value()).network);
  for (const char* bad : {"hostonly", "hostonly,name=", "hostonly,name=a-name-of-13c", "hostonly,name=a/b",
                          "hostonly,name=x,net=10.0.0.0/30", "hostonly,name=x,net=10.0.0.1/24",
                          "hostonly,name=x,dhcp=10.0.0.0/24", "hostonly,name=x,br=br0"}) {
    auto r = parse_net_option(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) EXPECT_NE(r.error().message().find("hostonly,name=NAME[,net=CIDR]"), std::string::npos) << bad;
  }
}

TEST(NetOption, HostOnlyTakesForwardsInsideItsNetwork) {
  auto o = parse_net_option("hostonly,name=lab,hostfwd=tcp::2222-:22,hostfwd=udp:0.0.0.0:5353-192.168.90.7:53");
  ASSERT_TRUE(o.ok()) << o.error().message();
  const auto& forwards = std::get<HostOnlyNetOption>(*o).forwards;
  ASSERT_EQ(forwards.size(), 2u);
  EXPECT_EQ(format_host_forward(forwards[0]), "tcp:127.0.0.1:2222-:22");
  EXPECT_FALSE(forwards[0].guest_address) << "no guest address: the VM's own";
  EXPECT_EQ(forwards[1].protocol, ForwardProtocol::kUdp);
  EXPECT_TRUE(parse_net_option("hostonly,name=lab,net=192.168.90.0/24,hostfwd=tcp::80-192.168.90.7:80").ok());
  auto outside = parse_net_option("hostonly,name=lab,net=192.168.90.0/24,hostfwd=tcp::80-10.0.0.7:80");
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.error().message().find("the guest address is outside net=192.168.90.0/24"), std::string::npos)
      << outside.error().message();
  auto bad = parse_net_option("hostonly,name=lab,hostfwd=tcp:80-:80");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("hostfwd=tcp:80-:80"), std::string::npos) << bad.error().message();
}

TEST(NetOption, ParsesInternalWithDhcpMacAndRate) {
  auto o = parse_net_option("internal,name=lab-1,dhcp=10.9.0.0/24,mac=02:00:00:00:00:0a,rate=1M");
  ASSERT_TRUE(o.ok()) << o.error().message();
  const auto* internal = std::get_if<InternalNetOption>(&*o);
  ASSERT_NE(internal, nullptr);
  EXPECT_EQ(net_mode_name(*o), "internal");
  EXPECT_EQ(internal->name, "lab-1");
  ASSERT_TRUE(internal->dhcp);
  EXPECT_EQ(format_ipv4_network(*internal->dhcp), "10.9.0.0/24");
  EXPECT_EQ(internal->mac, (MacAddress{0x02, 0, 0, 0, 0, 0x0a}));
  EXPECT_EQ(internal->rate, 1u << 20);
  auto plain = parse_net_option("internal,name=x");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(std::get<InternalNetOption>(*plain).dhcp);
}

TEST(NetOption, RejectsBadInternalInputOnOneLineWithTheForm) {
  const std::pair<const char*, const char*> cases[] = {
      {"internal", "name= is required"},
      {"internal,dhcp=10.9.0.0/24", "name= is required"},
      {"internal,name=", "1 to 64 characters"},
      {"internal,name=a/b", "not '/'"},
      {"internal,name=.x", "cannot start with '.'"},
      {"internal,name=x,dhcp=10.9.0.1/24", "dhcp=10.9.0.1/24"},
      {"internal,name=x,dhcp=10.9.0.0/31", "/8 to /30"},
      {"internal,name=x,hostfwd=tcp::1-:2", "unknown key"},
      {"internal,name=x,ifname=tap0", "unknown key"},
  };
  for (const auto& [text, why] : cases) {
    auto o = parse_net_option(text);
    ASSERT_FALSE(o.ok()) << text;
    const std::string& message = o.error().message();
    EXPECT_EQ(message.rfind(std::string("--net ") + text + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(why), std::string::npos) << message;
    EXPECT_NE(message.find("internal,name=NAME[,dhcp=CIDR]"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(NetOption, UserIsTheDefaultMode) {
  for (const char* text : {"", "user", "hostfwd=tcp::2222-:22"}) {
    auto o = parse_net_option(text);
    ASSERT_TRUE(o.ok()) << text << ": " << o.error().message();
    ASSERT_TRUE(std::holds_alternative<UserNetOption>(*o)) << text;
    EXPECT_EQ(net_mode_name(*o), "user");
  }
  const auto user = std::get<UserNetOption>(parse_net_option("user").value());
  EXPECT_EQ(format_ipv4_network(user.network), "10.0.2.0/24");
  EXPECT_TRUE(user.ipv6);
  EXPECT_FALSE(user.restrict);
  EXPECT_TRUE(user.forwards.empty());
  EXPECT_FALSE(user.rate.has_value());
}

TEST(NetOption, ParsesEveryUserKey) {
  auto o = parse_net_option(
      "user,hostfwd=tcp::8080-:80,hostfwd=udp:0.0.0.0:5353-192.168.7.20:53,net=192.168.7.0/24,ipv6=off,"
      "restrict=on,mac=52:54:00:ab:cd:ef,rate=1.5M/s");
  ASSERT_TRUE(o.ok()) << o.error().message();
  const auto& user = std::get<UserNetOption>(*o);
  ASSERT_EQ(user.forwards.size(), 2u);
  EXPECT_EQ(user.forwards[0].protocol, ForwardProtocol::kTcp);
  EXPECT_EQ(format_ipv4_address(user.forwards[0].host_address), "127.0.0.1");  // empty: loopback only
  EXPECT_EQ(user.forwards[0].host_port, 8080);
  EXPECT_FALSE(user.forwards[0].guest_address.has_value());
  EXPECT_EQ(user.forwards[0].guest_port, 80);
  EXPECT_EQ(format_host_forward(user.forwards[1]), "udp:0.0.0.0:5353-192.168.7.20:53");
  EXPECT_EQ(format_ipv4_network(user.network), "192.168.7.0/24");
  EXPECT_FALSE(user.ipv6);
  EXPECT_TRUE(user.restrict);
  EXPECT_EQ(format_mac_address(*user.mac), "52:54:00:ab:cd:ef");
  EXPECT_EQ(user.rate, 1536u * 1024u);
}

TEST(NetOption, NoneHasNoKeys) {
  auto o = parse_net_option("none");
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(std::holds_alternative<NoNetOption>(*o));
  EXPECT_FALSE(parse_net_option("none,mac=52:54:00:12:34:56").ok());
}

// Each bad option is named, with the part that is wrong, on one line.
TEST(NetOption, ErrorsNameTheOptionAndTheWrongPart) {
  const std::pair<const char*, const char*> cases[] = {
      {"bridged", "bridged: not a mode"},
      {"user,hostfwd=tcp::80", "hostfwd=tcp::80: expected PROTO"},
      {"user,hostfwd=sctp::80-:80", "protocol 'sctp'"},
      {"user,hostfwd=tcp::0-:80", "host port '0'"},
      {"user,hostfwd=tcp::99999-:80", "host port '99999'"},
      {"user,hostfwd=tcp:1.2.3:80-:80", "host address"},
      {"user,hostfwd=tcp::80-:x", "guest port 'x'"},
      {"user,hostfwd=tcp::80-10.0.3.5:80", "outside net=10.0.2.0/24"},
      {"user,hostfwd=tcp::80-:80-:81", "expected PROTO"},
      {"user,net=10.0.2.1/24", "host bits set"},
      {"user,net=10.0.2.0", "not a network"},
      {"user,net=10.0.2.0/30", "prefix must be"},
      {"user,ipv6=maybe", "ipv6=maybe: expected on or off"},
      {"user,restrict=yes", "restrict=yes: expected on or off"},
      {"user,rate=fast", "rate=fast"},
      {"user,mac=01:00:00:00:00:01", "mac=01:00:00:00:00:01"},
      {"user,ifname=tap0", "ifname=tap0: unknown key"},
      {"user,restrict", "restrict: not key=value"},
  };
  for (const auto& [text, part] : cases) {
    auto o = parse_net_option(text);
    ASSERT_FALSE(o.ok()) << text;
    const std::string& message = o.error().message();
    EXPECT_EQ(message.rfind(std::string("--net ") + text + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(part), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace hostvisor::net
