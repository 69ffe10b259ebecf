#include "devices/acpi/vm_generation_id.h"

#include <gtest/gtest.h>

#include "devices/testing/state_bytes.h"

namespace hostvisor {
namespace {

constexpr uint64_t kAddress = 0xef000;

struct VmGenerationIdFixture : ::testing::Test {
  GuestMemory memory = GuestMemory::create({{GuestAddress(0), 1 << 20}}).value();
  int notifications = 0;
  VmGenerationId device{memory, kAddress, [this] { ++notifications; }};

  VmGenerationId::Id in_memory() {
    VmGenerationId::Id id;
    EXPECT_TRUE(memory.read(GuestAddress(kAddress), id).ok());
    return id;
  }
};

TEST_F(VmGenerationIdFixture, FirstBootWritesARandomIdWithoutNotifying) {
  ASSERT_TRUE(device.generate().ok());
  EXPECT_EQ(in_memory(), device.id());
  EXPECT_NE(device.id(), VmGenerationId::Id{});
  EXPECT_EQ(notifications, 0);
  VmGenerationId other{memory, kAddress + 16, nullptr};
  ASSERT_TRUE(other.generate().ok());
  EXPECT_NE(other.id(), device.id()) << "two machines got the same ID";
}

TEST_F(VmGenerationIdFixture, ACloneGetsANewIdAndANotification) {
  ASSERT_TRUE(device.generate().ok());
  const VmGenerationId::Id before = device.id();
  ASSERT_TRUE(device.change().ok());
  EXPECT_NE(device.id(), before);
  EXPECT_EQ(in_memory(), device.id());
  EXPECT_EQ(notifications, 1);
}

TEST_F(VmGenerationIdFixture, RestorePutsTheSavedIdBackAtTheSavedAddress) {
  ASSERT_TRUE(device.generate().ok());
  const VmGenerationId::State saved = testing::through_state_bytes<VmGenerationId>(device.save());
  EXPECT_EQ(saved.address, kAddress);
  EXPECT_EQ(saved.id, device.id());

  // A newer hostvisor may place the ID elsewhere; the restored guest's
  // tables name the saved place, so that is where it goes.
  GuestMemory fresh = GuestMemory::create({{GuestAddress(0), 1 << 20}}).value();
  VmGenerationId restored{fresh, 0x9f000, [this] { ++notifications; }};
  ASSERT_TRUE(restored.restore(saved).ok());
  EXPECT_EQ(restored.address(), kAddress);
  EXPECT_EQ(restored.id(), device.id());
  VmGenerationId::Id id;
  ASSERT_TRUE(fresh.read(GuestAddress(kAddress), id).ok());
  EXPECT_EQ(id, device.id());
  EXPECT_EQ(notifications, 0);
}

TEST_F(VmGenerationIdFixture, RestoreRefusesAnAddressOutsideRamOrMisaligned) {
  for (const uint64_t address : {uint64_t{1} << 20, (uint64_t{1} << 20) - 8, kAddress + 4, ~uint64_t{0} - 7}) {
    auto restored = device.restore({address, {}});
    ASSERT_FALSE(restored.ok()) << address;
    EXPECT_EQ(restored.error().code(), ErrorCode::kCorrupt);
  }
}

}  // namespace
}  // namespace hostvisor
