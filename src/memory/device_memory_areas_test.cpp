#include "memory/device_memory_areas.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

using Area = DeviceMemoryAreas::Area;

TEST(DeviceMemoryAreas, FindsWhatOverlapsFromEveryOwnerInAddressOrder) {
  DeviceMemoryAreas areas;
  const int blk = 0, net = 0;
  areas.publish(&blk, {{0x5000, 0x5100}, {0x1000, 0x1010}});
  areas.publish(&net, {{0x3000, 0x4000}});
  EXPECT_EQ(areas.overlapping(0, 0x10000), (std::vector<Area>{{0x1000, 0x1010}, {0x3000, 0x4000}, {0x5000, 0x5100}}));
  EXPECT_EQ(areas.overlapping(0x1010, 0x3000), std::vector<Area>{}) << "ends are exclusive";
  EXPECT_EQ(areas.overlapping(0x3fff, 0x5001), (std::vector<Area>{{0x3000, 0x4000}, {0x5000, 0x5100}}));
}

TEST(DeviceMemoryAreas, AnOwnerReplacesAndWithdrawsOnlyItsOwn) {
  DeviceMemoryAreas areas;
  const int blk = 0, net = 0;
  areas.publish(&blk, {{0x1000, 0x2000}});
  areas.publish(&net, {{0x3000, 0x4000}});
  areas.publish(&blk, {{0x8000, 0x9000}});
  EXPECT_EQ(areas.overlapping(0, 0x10000), (std::vector<Area>{{0x3000, 0x4000}, {0x8000, 0x9000}}));
  areas.publish(&blk, {});
  EXPECT_EQ(areas.overlapping(0, 0x10000), (std::vector<Area>{{0x3000, 0x4000}}));
}

}  // namespace
}  // namespace hostvisor
