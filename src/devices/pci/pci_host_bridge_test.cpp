#include "devices/pci/pci_host_bridge.h"

#include <gtest/gtest.h>

#include "devices/pci/pci_layout.h"

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

}  // namespace
}  // namespace hostvisor
