#include "net/net_option.h"

#include <gtest/gtest.h>

namespace hostvisor::net {
namespace {

TEST(NetOption, ParsesTapWithNameAndMac) {
  auto o = parse_net_option("tap,ifname=hv0,mac=52:54:00:12:34:56");
  ASSERT_TRUE(o.ok()) << o.error().message();
  EXPECT_EQ(o->ifname, "hv0");
  ASSERT_TRUE(o->mac.has_value());
  EXPECT_EQ(format_mac_address(*o->mac), "52:54:00:12:34:56");
  auto plain = parse_net_option("tap,ifname=tap7");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->mac.has_value());
}

TEST(NetOption, RejectsBadInputWithTheExpectedForm) {
  for (const char* bad : {"", "user", "tap", "tap,ifname=", "tap,ifname=averyveryverylongname", "tap,ifname=a,mac=zz",
                          "tap,ifname=a,speed=10", "tap,ifname"}) {
    auto o = parse_net_option(bad);
    EXPECT_FALSE(o.ok()) << bad;
    if (!o.ok()) EXPECT_NE(o.error().message().find("tap,ifname=NAME"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace hostvisor::net
