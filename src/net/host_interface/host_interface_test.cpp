// The host-interface helpers: the route parser and the free-subnet choice
// on their own, and the ioctls on real interfaces in a network namespace
// of the test's own (created and gone with the test process).
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "net/host_interface/free_subnet.h"
#include "net/host_interface/host_routes.h"
#include "net/host_interface/link_control.h"
#include "net/host_interface/net_admin.h"
#include "net/tap/bridge_port.h"
#include "net/testing/private_network_namespace.h"

namespace hostvisor::net {
namespace {

Ipv4Network network(const std::string& text) { return parse_ipv4_network(text).value(); }

// What `ip -o link show dev NAME` says (iproute2 asks over netlink, a path
// independent of the ioctls under test).
std::string ip_link_show(const std::string& name) {
  std::string out;
  FILE* pipe = ::popen(("ip -o link show dev " + name + " 2>&1").c_str(), "r");
  if (!pipe) return out;
  char buf[1024];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

TEST(HostRoutes, ParsesProcNetRoute) {
  // As a little- or big-endian kernel prints 10.0.2.0/24, 192.168.56.0/24,
  // the default route, and a host route, with lines that do not parse.
  const uint32_t ten = htonl(0x0a000200), mask24 = htonl(0xffffff00), vbox = htonl(0xc0a83800);
  char text[1024];
  std::snprintf(text, sizeof text,
                "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
                "eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                "eth0\t%08X\t00000000\t0001\t0\t0\t0\t%08X\t0\t0\t0\n"
                "vbox0\t%08X\t00000000\t0001\t0\t0\t0\t%08X\t0\t0\t0\n"
                "eth1\t0100A8C0\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n"
                "garbage\n"
                "eth2\tZZZZZZZZ\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
                "eth3\t0000000A\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0\n",
                ten, mask24, vbox, mask24);
  const auto routes = parse_proc_net_route(text);
  ASSERT_EQ(routes.size(), 4u);
  EXPECT_EQ(format_ipv4_network(routes[0]), "0.0.0.0/0");
  EXPECT_EQ(format_ipv4_network(routes[1]), "10.0.2.0/24");
  EXPECT_EQ(format_ipv4_network(routes[2]), "192.168.56.0/24");
  EXPECT_EQ(routes[3].prefix_length, 32);
  EXPECT_TRUE(parse_proc_net_route("").empty());
}

TEST(FreeSubnet, SkipsEveryRouteButTheDefault) {
  EXPECT_EQ(format_ipv4_network(*choose_free_subnet({})), "192.168.56.0/24");
  EXPECT_EQ(format_ipv4_network(*choose_free_subnet({network("0.0.0.0/0"), network("10.0.2.0/24")})),
            "192.168.56.0/24");
  // A /24 taken, a wider route over the next ones, a host route inside the one after.
  EXPECT_EQ(format_ipv4_network(*choose_free_subnet(
                {network("192.168.56.0/24"), network("192.168.56.0/22"), network("192.168.60.7/32")})),
            "192.168.61.0/24");
  // All of 192.168.0.0/16 routed: 172.16 next; and 172.16.0.0/12 too: 10.
  EXPECT_EQ(format_ipv4_network(*choose_free_subnet({network("192.168.0.0/16")})), "172.16.0.0/24");
  EXPECT_EQ(format_ipv4_network(
                *choose_free_subnet({network("192.168.0.0/16"), network("172.16.0.0/12"), network("10.0.0.0/16")})),
            "10.1.0.0/24");
  EXPECT_FALSE(choose_free_subnet({network("192.168.0.0/16"), network("172.16.0.0/12"), network("10.0.0.0/8")}));
}

TEST(FreeSubnet, OverlapIsSymmetric) {
  EXPECT_TRUE(networks_overlap(network("10.0.0.0/8"), network("10.9.9.0/24")));
  EXPECT_TRUE(networks_overlap(network("10.9.9.0/24"), network("10.0.0.0/8")));
  EXPECT_FALSE(networks_overlap(network("10.9.9.0/24"), network("10.9.10.0/24")));
}

class HostInterfaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto netns = testing::enter_private_network_namespace();
    ASSERT_TRUE(netns.ok()) << netns.error().message();
  }
};

TEST_F(HostInterfaceTest, BridgeWithAddressAndRoute) {
  EXPECT_EQ(interface_index("hv-lan").error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(create_bridge("hv-lan").ok());
  EXPECT_EQ(create_bridge("hv-lan").error().code(), ErrorCode::kBusy);
  EXPECT_TRUE(interface_index("hv-lan").ok());
  ASSERT_TRUE(set_ipv4_address("hv-lan", {0xc0a83801}, network("192.168.56.0/24")).ok());
  ASSERT_TRUE(set_link_up("hv-lan").ok());
  EXPECT_NE(ip_link_show("hv-lan").find("UP"), std::string::npos) << ip_link_show("hv-lan");
  // The bridge's subnet is a route now, so the next network gets another.
  auto routes = read_host_routes();
  ASSERT_TRUE(routes.ok()) << routes.error().message();
  EXPECT_EQ(format_ipv4_network(*choose_free_subnet(*routes)), "192.168.57.0/24");
  ASSERT_TRUE(delete_bridge("hv-lan").ok());
  EXPECT_EQ(interface_index("hv-lan").error().code(), ErrorCode::kNotFound);
}

TEST_F(HostInterfaceTest, BridgePortIsANewTapOnTheBridgeAndUp) {
  ASSERT_TRUE(create_bridge("br0").ok());
  auto tap = open_bridge_port("br0");
  ASSERT_TRUE(tap.ok()) << tap.error().message();
  const std::string name = (*tap)->interface_name();
  EXPECT_EQ(name.rfind("hvtap", 0), 0u) << name;
  const std::string shown = ip_link_show(name);
  EXPECT_NE(shown.find("master br0"), std::string::npos) << shown;
  EXPECT_NE(shown.find("UP"), std::string::npos) << shown;
  EXPECT_TRUE((*tap)->supports_offloads());
  // A second VM gets a tap of its own.
  auto second = open_bridge_port("br0");
  ASSERT_TRUE(second.ok()) << second.error().message();
  EXPECT_NE((*second)->interface_name(), name);
  // Not persistent: gone with its fd.
  tap->reset();
  EXPECT_EQ(interface_index(name).error().code(), ErrorCode::kNotFound);
}

TEST_F(HostInterfaceTest, BridgePortErrorsSayWhatToDo) {
  auto missing = open_bridge_port("br9");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message(),
            "there is no bridge br9: create it with `ip link add br9 type bridge && ip link set br9 up`");
  ASSERT_TRUE(open_bridge_port("lo").error().message().starts_with("lo is not a bridge"));

  // Without CAP_NET_ADMIN (dropped from this thread's effective set).
  ASSERT_TRUE(create_bridge("br0").ok());
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3]{};
  ASSERT_EQ(::syscall(SYS_capget, &header, caps), 0);
  ASSERT_TRUE(has_net_admin());
  const auto saved = caps[CAP_NET_ADMIN / 32].effective;
  caps[CAP_NET_ADMIN / 32].effective &= ~(1u << (CAP_NET_ADMIN % 32));
  ASSERT_EQ(::syscall(SYS_capset, &header, caps), 0);
  EXPECT_FALSE(has_net_admin());
  auto refused = open_bridge_port("br0");
  caps[CAP_NET_ADMIN / 32].effective = saved;
  ASSERT_EQ(::syscall(SYS_capset, &header, caps), 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.error().message().starts_with(
      "putting a tap on bridge br0 needs CAP_NET_ADMIN: run hostvisor as root, or grant it CAP_NET_ADMIN once: "
      "sudo setcap cap_net_admin+ep /"))
      << refused.error().message();
}

}  // namespace
}  // namespace hostvisor::net
