#include "devices/pci/pci_config_space.h"

#include <gtest/gtest.h>

#include <vector>

namespace hostvisor {
namespace {

PciConfigSpace make_space() {
  return PciConfigSpace(PciConfigSpace::Identity{.vendor_id = 0x1af4,
                                                 .device_id = 0x1044,
                                                 .revision = 1,
                                                 .class_code = 0xff0000,
                                                 .subsystem_vendor_id = 0x1af4,
                                                 .subsystem_id = 0x40});
}

TEST(PciConfigSpace, IdentityIsReadOnly) {
  PciConfigSpace c = make_space();
  EXPECT_EQ(c.read(0, 4), 0x10441af4u);
  c.write(0, 4, 0xdeadbeef);
  EXPECT_EQ(c.read(0, 4), 0x10441af4u);
  EXPECT_EQ(c.read(pci_reg::kRevision, 4), 0xff000001u);  // revision 1, class ff:00:00
  EXPECT_EQ(c.read(pci_reg::kSubsystemVendorId, 4), 0x00401af4u);
  c.write(pci_reg::kSubsystemVendorId, 4, 0);
  EXPECT_EQ(c.read(pci_reg::kSubsystemVendorId, 2), 0x1af4u);
  EXPECT_EQ(c.read(pci_reg::kHeaderType, 1), 0u);
}

TEST(PciConfigSpace, CommandHasOnlyItsWritableBits) {
  PciConfigSpace c = make_space();
  c.write(pci_reg::kCommand, 2, 0xffff);
  EXPECT_EQ(c.read(pci_reg::kCommand, 2), 0x0547u);  // IO, MEM, master, parity, SERR, INTx disable
  c.write(pci_reg::kCommand, 1, 0x02);
  EXPECT_EQ(c.read(pci_reg::kCommand, 2), 0x0502u);  // byte write leaves the high byte alone
}

TEST(PciConfigSpace, StatusErrorBitsAreWriteOneToClear) {
  PciConfigSpace c = make_space();
  c.set_raw_u16(pci_reg::kStatus, 0xf900 | pci_status::kInterruptStatus);
  c.write(pci_reg::kStatus, 2, 0x8000 | pci_status::kInterruptStatus);
  EXPECT_EQ(c.read(pci_reg::kStatus, 2), 0x7900u | pci_status::kInterruptStatus);  // INTx status is read-only
  c.write(pci_reg::kStatus, 2, 0);
  EXPECT_EQ(c.read(pci_reg::kStatus, 2), 0x7900u | pci_status::kInterruptStatus);
}

TEST(PciConfigSpace, InterruptLineWritablePinNot) {
  PciConfigSpace c = make_space();
  c.set_interrupt_pin(1);
  c.write(pci_reg::kInterruptLine, 2, 0x0433);
  EXPECT_EQ(c.read(pci_reg::kInterruptLine, 1), 0x33u);
  EXPECT_EQ(c.read(pci_reg::kInterruptPin, 1), 1u);
}

TEST(PciConfigSpace, BadAccessesReadAllOnesAndAreDropped) {
  PciConfigSpace c = make_space();
  EXPECT_EQ(c.read(0x3, 2), 0xffffffffu);  // crosses a dword
  EXPECT_EQ(c.read(0x0, 3), 0xffffffffu);
  EXPECT_EQ(c.read(4096, 1), 0xffffffffu);
  c.write(pci_reg::kCommand + 1, 4, 0xffffffff);
  EXPECT_EQ(c.read(pci_reg::kCommand, 2), 0u);
}

TEST(PciConfigSpace, Memory32BarSizeProbe) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(0, {PciBarKind::kMemory32, 0x1000, false}).ok());
  EXPECT_EQ(c.read(pci_reg::kBar0, 4), 0u);
  c.write(pci_reg::kBar0, 4, 0xffffffff);
  EXPECT_EQ(c.read(pci_reg::kBar0, 4), 0xfffff000u);
  c.write(pci_reg::kBar0, 4, 0xfebf1234);
  EXPECT_EQ(c.read(pci_reg::kBar0, 4), 0xfebf1000u);  // aligned down to the size
  EXPECT_EQ(c.bar_address(0), 0xfebf1000u);
}

TEST(PciConfigSpace, PrefetchableMemory32Flags) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(2, {PciBarKind::kMemory32, 0x100000, true}).ok());
  c.write(pci_reg::kBar0 + 8, 4, 0xffffffff);
  EXPECT_EQ(c.read(pci_reg::kBar0 + 8, 4), 0xfff00008u);
}

TEST(PciConfigSpace, IoBarSizeProbe) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(1, {PciBarKind::kIo, 32, false}).ok());
  EXPECT_EQ(c.read(pci_reg::kBar0 + 4, 4), 1u);
  c.write(pci_reg::kBar0 + 4, 4, 0xffffffff);
  EXPECT_EQ(c.read(pci_reg::kBar0 + 4, 4), 0x0000ffe1u);
  c.write(pci_reg::kBar0 + 4, 4, 0xc040);
  EXPECT_EQ(c.bar_address(1), 0xc040u);
}

TEST(PciConfigSpace, Memory64BarSizeProbeBothHalves) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(0, {PciBarKind::kMemory64, 0x4000, false}).ok());
  EXPECT_EQ(c.read(pci_reg::kBar0, 4), 0x4u);
  c.write(pci_reg::kBar0, 4, 0xffffffff);
  c.write(pci_reg::kBar0 + 4, 4, 0xffffffff);
  EXPECT_EQ(c.read(pci_reg::kBar0, 4), 0xffffc004u);
  EXPECT_EQ(c.read(pci_reg::kBar0 + 4, 4), 0xffffffffu);
  c.write(pci_reg::kBar0, 4, 0xc0000000);
  c.write(pci_reg::kBar0 + 4, 4, 0x1);
  EXPECT_EQ(c.bar_address(0), 0x1c0000000u);
}

TEST(PciConfigSpace, LargeMemory64BarMasksTheHighDword) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(2, {PciBarKind::kMemory64, 8ull << 30, true}).ok());  // 8 GiB
  c.write(pci_reg::kBar0 + 8, 4, 0xffffffff);
  c.write(pci_reg::kBar0 + 12, 4, 0xffffffff);
  EXPECT_EQ(c.read(pci_reg::kBar0 + 8, 4), 0x0000000cu);
  EXPECT_EQ(c.read(pci_reg::kBar0 + 12, 4), 0xfffffffeu);
}

TEST(PciConfigSpace, UnimplementedBarsReadZero) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(0, {PciBarKind::kMemory64, 0x1000, false}).ok());
  for (int i = 2; i < 6; ++i) {
    c.write(pci_reg::kBar0 + 4 * i, 4, 0xffffffff);
    EXPECT_EQ(c.read(pci_reg::kBar0 + 4 * i, 4), 0u) << "BAR" << i;
  }
  c.write(pci_reg::kExpansionRom, 4, 0xffffffff);
  EXPECT_EQ(c.read(pci_reg::kExpansionRom, 4), 0u);
}

TEST(PciConfigSpace, RejectsBadBarDeclarations) {
  PciConfigSpace c = make_space();
  EXPECT_FALSE(c.add_bar(5, {PciBarKind::kMemory64, 0x1000, false}).ok());  // no room for the upper half
  EXPECT_FALSE(c.add_bar(0, {PciBarKind::kMemory32, 0x1800, false}).ok());  // not a power of two
  EXPECT_FALSE(c.add_bar(0, {PciBarKind::kIo, 512, false}).ok());
  EXPECT_FALSE(c.add_bar(6, {PciBarKind::kMemory32, 0x1000, false}).ok());
  ASSERT_TRUE(c.add_bar(0, {PciBarKind::kMemory64, 0x1000, false}).ok());
  EXPECT_FALSE(c.add_bar(1, {PciBarKind::kMemory32, 0x1000, false}).ok());  // upper half of BAR0
  EXPECT_FALSE(c.add_bar(0, {PciBarKind::kMemory32, 0x1000, false}).ok());
}

TEST(PciConfigSpace, DecodeAddressFollowsCommandRegister) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(0, {PciBarKind::kMemory32, 0x1000, false}).ok());
  ASSERT_TRUE(c.add_bar(1, {PciBarKind::kIo, 16, false}).ok());
  c.write(pci_reg::kBar0, 4, 0xd0000000);
  c.write(pci_reg::kBar0 + 4, 4, 0xc010);
  EXPECT_FALSE(c.bar_decode_address(0));
  c.write(pci_reg::kCommand, 2, pci_command::kMemorySpace);
  EXPECT_EQ(c.bar_decode_address(0), 0xd0000000u);
  EXPECT_FALSE(c.bar_decode_address(1));
  c.write(pci_reg::kCommand, 2, pci_command::kIoSpace);
  EXPECT_FALSE(c.bar_decode_address(0));
  EXPECT_EQ(c.bar_decode_address(1), 0xc010u);
  c.write(pci_reg::kBar0 + 4, 4, 0);
  EXPECT_FALSE(c.bar_decode_address(1));  // unprogrammed
}

TEST(PciConfigSpace, CapabilityListWalk) {
  PciConfigSpace c = make_space();
  EXPECT_EQ(c.read(pci_reg::kStatus, 2) & pci_status::kCapabilitiesList, 0u);
  const uint8_t a[14] = {1, 2, 3};
  const uint8_t b[2] = {0xaa, 0xbb};
  const uint8_t b_writable[2] = {0x0f, 0};
  auto first = c.add_capability(0x09, a);
  auto second = c.add_capability(0x05, b, b_writable);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(c.read(pci_reg::kStatus, 2) & pci_status::kCapabilitiesList, 0u);

  std::vector<std::pair<uint8_t, uint16_t>> found;
  uint16_t at = c.read(pci_reg::kCapabilitiesPointer, 1);
  for (int guard = 0; at != 0 && guard < 48; ++guard) {
    EXPECT_EQ(at % 4, 0u);
    found.push_back({static_cast<uint8_t>(c.read(at, 1)), at});
    at = static_cast<uint16_t>(c.read(at + 1, 1));
  }
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].first, 0x09);
  EXPECT_EQ(found[0].second, 0x40);
  EXPECT_EQ(found[1].first, 0x05);
  EXPECT_EQ(found[1].second, 0x50);  // 0x40 + 16 bytes, dword aligned
  EXPECT_EQ(c.read(0x42, 1), 1u);
  c.write(0x52, 2, 0xffff);
  EXPECT_EQ(c.read(0x52, 2), 0xbbafu);  // only the low nibble of the first body byte is writable
  c.write(0x42, 1, 0);
  EXPECT_EQ(c.read(0x42, 1), 1u);
}

TEST(PciConfigSpace, CapabilityListIsBounded) {
  PciConfigSpace c = make_space();
  const std::vector<uint8_t> big(190, 0);
  ASSERT_TRUE(c.add_capability(0x09, big).ok());
  EXPECT_FALSE(c.add_capability(0x09, big).ok());
}

TEST(PciConfigSpace, ResetClearsGuestState) {
  PciConfigSpace c = make_space();
  ASSERT_TRUE(c.add_bar(0, {PciBarKind::kMemory64, 0x1000, false}).ok());
  c.write(pci_reg::kCommand, 2, 0x7);
  c.write(pci_reg::kBar0, 4, 0xd0000000);
  c.write(pci_reg::kInterruptLine, 1, 9);
  c.reset();
  EXPECT_EQ(c.read(pci_reg::kCommand, 2), 0u);
  EXPECT_EQ(c.read(pci_reg::kBar0, 4), 0x4u);  // flags survive
  EXPECT_EQ(c.read(pci_reg::kInterruptLine, 1), 0u);
}

}  // namespace
}  // namespace hostvisor

namespace hostvisor {
namespace {

TEST(PciConfigSpaceState, RoundTripsGuestState) {
  PciConfigSpace a = make_space();
  ASSERT_TRUE(a.add_bar(0, {PciBarKind::kMemory64, 0x1000, false}).ok());
  a.write(pci_reg::kBar0, 4, 0xd0000000);
  a.write(pci_reg::kCommand, 2, 0x6);
  a.write(pci_reg::kInterruptLine, 1, 11);
  PciConfigSpace b = make_space();
  ASSERT_TRUE(b.add_bar(0, {PciBarKind::kMemory64, 0x1000, false}).ok());
  ASSERT_TRUE(b.restore(a.save()).ok());
  EXPECT_EQ(b.bar_address(0), 0xd0000000u);
  EXPECT_EQ(b.command(), 0x6u);
  EXPECT_EQ(b.read(pci_reg::kInterruptLine, 1), 11u);
  // Masks still apply after a restore.
  b.write(pci_reg::kBar0, 4, 0xffffffff);
  EXPECT_EQ(b.read(pci_reg::kBar0, 4), 0xfffff004u);
}

TEST(PciConfigSpaceState, RejectsAnotherDevicesState) {
  PciConfigSpace a = make_space();
  PciConfigSpace other(PciConfigSpace::Identity{.vendor_id = 0x8086, .device_id = 0x29c0});
  auto r = other.restore(a.save());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt);
  PciConfigSpace::State bad_bar = a.save();
  bad_bar.bytes[pci_reg::kBar0] = 0x1;  // an I/O BAR where the device has none
  EXPECT_FALSE(a.restore(bad_bar).ok());
}

}  // namespace
}  // namespace hostvisor
