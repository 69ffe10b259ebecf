#include "devices/bus/bus.h"

#include <gtest/gtest.h>

#include <vector>

namespace hostvisor {
namespace {

class Recorder : public BusDevice {
 public:
  std::string_view name() const override { return "recorder"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    last_offset = offset;
    for (auto& b : data) b = static_cast<uint8_t>(offset);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    last_offset = offset;
    written.assign(data.begin(), data.end());
  }
  uint64_t last_offset = ~0ull;
  std::vector<uint8_t> written;
};

TEST(Bus, DispatchesWithOffsetRelativeToBase) {
  Bus bus("pio", 0xffff);
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(dev, 0x3f8, 8).ok());
  uint8_t value = 0;
  EXPECT_TRUE(bus.read(0x3fd, std::span(&value, 1)));
  EXPECT_EQ(dev->last_offset, 5u);
  EXPECT_EQ(value, 5);
  const uint8_t out[2] = {0xaa, 0xbb};
  EXPECT_TRUE(bus.write(0x3f8, out));
  EXPECT_EQ(dev->last_offset, 0u);
  EXPECT_EQ(dev->written, (std::vector<uint8_t>{0xaa, 0xbb}));
}

TEST(Bus, UnclaimedReadIsAllOnes) {
  Bus bus("pio", 0xffff);
  uint32_t value = 0;
  EXPECT_FALSE(bus.read(0x80, std::span(reinterpret_cast<uint8_t*>(&value), 4)));
  EXPECT_EQ(value, 0xffffffffu);
  const uint8_t b = 1;
  EXPECT_FALSE(bus.write(0x80, std::span(&b, 1)));
}

TEST(Bus, AccessStraddlingTheEndIsUnclaimed) {
  Bus bus("mmio");
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(dev, 0x1000, 0x10).ok());
  uint32_t value = 0;
  EXPECT_FALSE(bus.read(0x100e, std::span(reinterpret_cast<uint8_t*>(&value), 4)));
  EXPECT_TRUE(bus.read(0x100c, std::span(reinterpret_cast<uint8_t*>(&value), 4)));
}

TEST(Bus, RejectsOverlappingRanges) {
  Bus bus("pio", 0xffff);
  auto a = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(a, 0x60, 1).ok());
  ASSERT_TRUE(bus.insert(a, 0x64, 1).ok());
  auto r = bus.insert(a, 0x5f, 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kBusy);
  EXPECT_NE(r.error().message().find("overlaps"), std::string::npos);
  EXPECT_FALSE(bus.insert(a, 0x60, 1).ok());
  EXPECT_FALSE(bus.insert(a, 0x50, 0x100).ok());  // covers both
  EXPECT_TRUE(bus.insert(a, 0x61, 3).ok());       // fits exactly between
}

TEST(Bus, RejectsRangesOutsideTheBus) {
  Bus bus("pio", 0xffff);
  auto a = std::make_shared<Recorder>();
  EXPECT_FALSE(bus.insert(a, 0xfff0, 0x20).ok());
  EXPECT_FALSE(bus.insert(a, 0x10, 0).ok());
  Bus mmio("mmio");
  EXPECT_FALSE(mmio.insert(a, UINT64_MAX - 1, 4).ok());
  EXPECT_TRUE(mmio.insert(a, UINT64_MAX - 3, 4).ok());
}

TEST(Bus, RemoveFreesTheRange) {
  Bus bus("pio", 0xffff);
  auto a = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.insert(a, 0x70, 2).ok());
  EXPECT_TRUE(bus.remove(0x70).ok());
  EXPECT_FALSE(bus.remove(0x70).ok());
  uint8_t v;
  EXPECT_FALSE(bus.read(0x70, std::span(&v, 1)));
  EXPECT_TRUE(bus.insert(a, 0x70, 2).ok());
}

}  // namespace
}  // namespace hostvisor
