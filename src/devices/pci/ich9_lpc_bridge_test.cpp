#include "devices/pci/ich9_lpc_bridge.h"

#include <gtest/gtest.h>

#include "devices/testing/state_bytes.h"

namespace hostvisor {
namespace {

TEST(Ich9LpcBridge, IdentifiesAsTheQ35IsaBridge) {
  Ich9LpcBridge lpc(0x600);
  EXPECT_EQ(lpc.config_read(pci_reg::kVendorId, 4), 0x29188086u);
  EXPECT_EQ(lpc.config_read(pci_reg::kClassCode - 1, 4) >> 8, 0x060100u);
}

TEST(Ich9LpcBridge, PmbaseSaysWhereThePmBlockIsWhateverIsWritten) {
  Ich9LpcBridge lpc(0x600);
  // ACPI is on and PMBASE points at the block: OVMF keeps it as it is.
  EXPECT_EQ(lpc.config_read(ich9::kPmbase, 4), 0x601u);
  EXPECT_EQ(lpc.config_read(ich9::kAcpiCntl, 1) & ich9::kAcpiEnable, ich9::kAcpiEnable);
  lpc.config_write(ich9::kPmbase, 4, 0xb001);
  EXPECT_EQ(lpc.config_read(ich9::kPmbase, 4), 0x601u) << "the block does not move, so PMBASE does not either";
  lpc.config_write(ich9::kAcpiCntl, 1, 0x03);
  EXPECT_EQ(lpc.config_read(ich9::kAcpiCntl, 1), 0x83u) << "ACPI stays enabled; the SCI select reads back";
}

TEST(Ich9LpcBridge, RcbaAndPirqRoutingReadBackTheirWritableBits) {
  Ich9LpcBridge lpc(0x600);
  EXPECT_EQ(lpc.config_read(ich9::kRcba, 4), 0u);
  lpc.config_write(ich9::kRcba, 4, 0xfed1c001u);
  EXPECT_EQ(lpc.config_read(ich9::kRcba, 4), 0xfed1c001u);
  lpc.config_write(ich9::kRcba, 4, 0xffffffffu);
  EXPECT_EQ(lpc.config_read(ich9::kRcba, 4), ich9::kRcbaMask);
  EXPECT_EQ(lpc.config_read(ich9::kPirqARouting, 4), 0x80808080u);
  EXPECT_EQ(lpc.config_read(ich9::kPirqERouting, 4), 0x80808080u);
  lpc.config_write(ich9::kPirqARouting, 4, 0xff0b0a05u);
  EXPECT_EQ(lpc.config_read(ich9::kPirqARouting, 4), 0x8f0b0a05u);
}

TEST(Ich9LpcBridge, StateRoundTripsWhatFirmwareProgrammed) {
  Ich9LpcBridge lpc(0x600);
  lpc.config_write(ich9::kRcba, 4, 0xfed1c001u);
  lpc.config_write(ich9::kPirqERouting + 1, 1, 0x0a);
  Ich9LpcBridge restored(0x600);
  ASSERT_TRUE(restored.restore(testing::through_state_bytes<Ich9LpcBridge>(lpc.save())).ok());
  EXPECT_EQ(restored.config_read(ich9::kRcba, 4), 0xfed1c001u);
  EXPECT_EQ(restored.config_read(ich9::kPirqERouting, 4), 0x80800a80u);
}

}  // namespace
}  // namespace hostvisor
