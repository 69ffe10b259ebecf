#include "net/mac_address.h"

#include <gtest/gtest.h>

namespace hostvisor::net {
namespace {

TEST(MacAddress, DerivedAddressesAreStableUnicastAndLocal) {
  const MacAddress a = derived_mac_address("vm dev, nic 0");
  EXPECT_EQ(a, derived_mac_address("vm dev, nic 0"));
  EXPECT_NE(a, derived_mac_address("vm dev, nic 1"));
  for (const char* seed : {"", "a", "vm dev, nic 0", "another vm"}) {
    const MacAddress mac = derived_mac_address(seed);
    EXPECT_EQ(mac[0] & 1, 0) << seed << ": multicast";
    EXPECT_EQ(mac[0] & 2, 2) << seed << ": not locally administered";
    EXPECT_TRUE(parse_mac_address(format_mac_address(mac)).ok()) << seed;
  }
}

}  // namespace
}  // namespace hostvisor::net
