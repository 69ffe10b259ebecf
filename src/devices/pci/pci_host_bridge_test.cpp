#include "devices/pci/pci_host_bridge.h"

#include <gtest/gtest.h>

#include "devices/pci/pci_layout.h"
#include "devices/testing/state_bytes.h"

namespace hostvisor {
namespace {

TEST(PciHostBridge, PciexbarSaysWhereEcamDecodesWhateverIsWritten) {
  PciHostBridge bridge;
  EXPECT_EQ(bridge.config_read(q35::kPciexbar, 4), pci::kEcamBase | 1u);
  EXPECT_EQ(bridge.config_read(q35::kPciexbar + 4, 4), 0u);
  // What SeaBIOS and OVMF write reads back as written...
  bridge.config_write(q35::kPciexbar + 4, 4, 0);
  bridge.config_write(q35::kPciexbar, 4, pci::kEcamBase | 1u);
  EXPECT_EQ(bridge.config_read(q35::kPciexbar, 4), pci::kEcamBase | 1u);
  // ...and a move elsewhere does not happen, so it is not pretended.
  bridge.config_write(q35::kPciexbar, 4, 0xe0000001u);
  EXPECT_EQ(bridge.config_read(q35::kPciexbar, 4), pci::kEcamBase | 1u);
}

TEST(PciHostBridge, PamRegistersKeepTheirEnableBits) {
  PciHostBridge bridge;
  for (unsigned i = 0; i < q35::kPamCount; ++i) EXPECT_EQ(bridge.config_read(q35::kPam0 + i, 1), 0u) << i;
  // SeaBIOS makes the BIOS area read/write to shadow itself, then read-only.
  bridge.config_write(q35::kPam0, 4, 0xffffffffu);
  EXPECT_EQ(bridge.config_read(q35::kPam0, 4), 0x33333330u);
  bridge.config_write(q35::kPam0 + 4, 4, 0x00111111u);
  EXPECT_EQ(bridge.config_read(q35::kPam0 + 4, 4), 0x00111111u) << "PAM4-6; 0x97 is not a PAM register";
  bridge.config_write(q35::kPam0, 1, 0x10);
  EXPECT_EQ(bridge.config_read(q35::kPam0, 1), 0x10u);
}

TEST(PciHostBridge, SmramLocksUntilReset) {
  PciHostBridge bridge;
  EXPECT_EQ(bridge.config_read(q35::kSmram, 1), q35::kSmramBaseSegment);
  EXPECT_EQ(bridge.config_read(q35::kEsmramc, 1), q35::kEsmramcCacheBits);
  bridge.config_write(q35::kSmram, 1, q35::kSmramOpen | q35::kSmramGlobalEnable);
  EXPECT_EQ(bridge.config_read(q35::kSmram, 1), 0x4au) << "D_OPEN, G_SMRAME and the fixed segment";
  bridge.config_write(q35::kSmram, 1, 0xff);
  EXPECT_EQ(bridge.config_read(q35::kSmram, 1), 0x3au) << "D_LCK set: D_OPEN drops";
  // Locked: only D_CLS changes, ESMRAMC is frozen.
  bridge.config_write(q35::kSmram, 1, 0x00);
  EXPECT_EQ(bridge.config_read(q35::kSmram, 1), 0x1au);
  bridge.config_write(q35::kSmram, 1, q35::kSmramClosed);
  EXPECT_EQ(bridge.config_read(q35::kSmram, 1), 0x3au);
  bridge.config_write(q35::kEsmramc, 1, 0xff);
  EXPECT_EQ(bridge.config_read(q35::kEsmramc, 1), q35::kEsmramcCacheBits);
}

TEST(PciHostBridge, EsmramcWritableBeforeTheLock) {
  PciHostBridge bridge;
  bridge.config_write(q35::kEsmramc, 1, 0xff);
  EXPECT_EQ(bridge.config_read(q35::kEsmramc, 1), 0xbfu) << "H_SMRAME, TSEG size and enable; E_SMERR stays clear";
}

// What firmware programmed survives a snapshot, the lock included: after
// the restore D_OPEN still cannot be set and ESMRAMC stays frozen.
TEST(PciHostBridge, SaveAndRestoreKeepPamSmramAndTheLock) {
  PciHostBridge bridge;
  bridge.config_write(q35::kPam0, 4, 0x11111110u);
  bridge.config_write(q35::kEsmramc, 1, q35::kEsmramcTsegEnable);
  bridge.config_write(q35::kSmram, 1, q35::kSmramLock | q35::kSmramGlobalEnable);
  const PciHostBridge::State saved = testing::through_state_bytes<PciHostBridge>(bridge.save());

  PciHostBridge restored;
  ASSERT_TRUE(restored.restore(saved).ok());
  EXPECT_EQ(restored.config_read(q35::kPam0, 4), 0x11111110u);
  EXPECT_EQ(restored.config_read(q35::kEsmramc, 1), q35::kEsmramcCacheBits | q35::kEsmramcTsegEnable);
  const uint32_t smram = restored.config_read(q35::kSmram, 1);
  EXPECT_EQ(smram, bridge.config_read(q35::kSmram, 1));
  restored.config_write(q35::kSmram, 1, q35::kSmramOpen | q35::kSmramLock | q35::kSmramGlobalEnable);
  EXPECT_EQ(restored.config_read(q35::kSmram, 1), smram) << "the lock did not survive the restore";
  restored.config_write(q35::kEsmramc, 1, 0);
  EXPECT_EQ(restored.config_read(q35::kEsmramc, 1), q35::kEsmramcCacheBits | q35::kEsmramcTsegEnable);
  // An unlocked bridge restored from it stays unlocked.
  PciHostBridge open_bridge;
  open_bridge.config_write(q35::kSmram, 1, q35::kSmramGlobalEnable);
  PciHostBridge open_restored;
  ASSERT_TRUE(open_restored.restore(open_bridge.save()).ok());
  open_restored.config_write(q35::kSmram, 1, q35::kSmramOpen | q35::kSmramGlobalEnable);
  EXPECT_EQ(open_restored.config_read(q35::kSmram, 1), 0x4au);
}

TEST(PciHostBridge, RestoreRefusesAnotherDevicesConfigSpace) {
  PciHostBridge bridge;
  PciHostBridge::State foreign = bridge.save();
  foreign.config.bytes[pci_reg::kDeviceId] ^= 1;
  EXPECT_FALSE(PciHostBridge().restore(foreign).ok());
}

}  // namespace
}  // namespace hostvisor
