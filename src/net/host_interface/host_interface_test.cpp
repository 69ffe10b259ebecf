// The host-interface helpers: the route parser and the free-subnet choice
// on their own; the ioctls, bridge ports and the host-only server on real
// interfaces in a network namespace of the test's own (created and gone
// with the test process).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "net/host_interface/free_subnet.h"
#include "net/host_interface/host_routes.h"
#include "net/host_interface/link_control.h"
#include "net/host_interface/net_admin.h"
#include "net/host_only/host_only_server.h"
#include "net/tap/bridge_port.h"
#include "net/testing/frames.h"
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

// The host-only server on its own: the bridge with the host's address and
// forwarding off, DHCP answered from its tap (a VM's tap in the bridge
// asks), and when its last member's connection closes it removes the bridge.
TEST_F(HostInterfaceTest, HostOnlyServerServesDhcpAndRemovesTheBridgeAfterTheLastVm) {
  const std::string socket_path =
      (std::filesystem::temp_directory_path() / ("hv-hostonly-test-" + std::to_string(::getpid()) + ".sock")).string();
  HostOnlyServerOptions options{"hv-unit", network("192.168.91.0/24"), socket_path, "", std::chrono::seconds(30)};
  auto server = HostOnlyServer::create(options);
  ASSERT_TRUE(server.ok()) << server.error().message();
  EXPECT_NE(ip_link_show("hv-unit").find("UP"), std::string::npos) << ip_link_show("hv-unit");
  std::ifstream forwarding("/proc/sys/net/ipv4/conf/hv-unit/forwarding");
  int forwards = -1;
  forwarding >> forwards;
  EXPECT_EQ(forwards, 0) << "the bridge must not route a VM's packets beyond the host";
  auto routes = read_host_routes();
  ASSERT_TRUE(routes.ok());
  EXPECT_TRUE(std::any_of(routes->begin(), routes->end(), [](const Ipv4Network& r) {
    return format_ipv4_network(r) == "192.168.91.0/24";
  })) << "the host's address on the bridge makes its subnet a route";

  // A VM: a connection to the server, a tap in the bridge.
  const int member = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::connect(member, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  std::thread serving([&] { EXPECT_TRUE((*server)->run().ok()); });
  auto vm = open_bridge_port("hv-unit");
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  const MacAddress mac{0x52, 0x54, 0x00, 0x00, 0x00, 0x07};
  const auto discover = testing::dhcp_frame(mac, testing::kDhcpDiscover, 0x77);
  std::vector<uint8_t> packet(kVnetHeaderSize);
  packet.insert(packet.end(), discover.begin(), discover.end());
  std::optional<testing::DhcpReply> offer;
  std::vector<uint8_t> buffer(kMaxPacketSize);
  for (int attempt = 0; attempt < 20 && !offer; ++attempt) {
    const iovec iov{packet.data(), packet.size()};
    ASSERT_TRUE((*vm)->send({&iov, 1}).ok());
    pollfd p{(*vm)->receive_fd(), POLLIN, 0};
    while (!offer && ::poll(&p, 1, 200) == 1) {
      auto got = (*vm)->receive(buffer);
      if (!got.ok() || !got->has_value()) break;
      auto frame = testing::parse_frame(std::span(buffer).subspan(kVnetHeaderSize, **got - kVnetHeaderSize));
      if (frame && frame->destination_port == 68) offer = testing::parse_dhcp(frame->payload);
    }
  }
  ASSERT_TRUE(offer) << "no DHCP offer on the host-only bridge";
  EXPECT_EQ(offer->message_type, testing::kDhcpOffer);
  EXPECT_TRUE(network("192.168.91.0/24").contains(offer->your_address));
  EXPECT_NE(format_ipv4_address(offer->your_address), "192.168.91.1") << "the host's address";
  EXPECT_NE(format_ipv4_address(offer->your_address), "192.168.91.2") << "the DHCP server's";
  EXPECT_FALSE(offer->router) << "nothing beyond the host: no gateway";

  // The VM goes: its connection closes, the server ends and the bridge goes.
  vm->reset();
  ::close(member);
  serving.join();
  server->reset();
  EXPECT_EQ(interface_index("hv-unit").error().code(), ErrorCode::kNotFound);
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

// A process in a user namespace of its own holds every capability there,
// CAP_NET_ADMIN included, but none over the network namespace it kept (a
// --jail run with a host-only NIC): it must not take the privileged form.
TEST(NetAdmin, AUserNamespaceOfItsOwnGivesNoneOverTheNetworkItKept) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Exit codes: 0 as expected, 1 no caps in the new namespace, 2 has_net_admin()
    // said yes, 3 no new user namespace.
    if (::unshare(CLONE_NEWUSER) != 0) ::_exit(3);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3]{};
    if (::syscall(SYS_capget, &header, caps) != 0 ||
        (caps[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32))) == 0)
      ::_exit(1);
    ::_exit(has_net_admin() ? 2 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_NE(WEXITSTATUS(status), 3) << "no new user namespace (as --jail needs): nothing to test";
  EXPECT_NE(WEXITSTATUS(status), 1) << "the new user namespace gave no CAP_NET_ADMIN: nothing to test";
  EXPECT_NE(WEXITSTATUS(status), 2) << "has_net_admin() counted a capability that does not reach this network";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace hostvisor::net
