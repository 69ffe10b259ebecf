// The bootorder file: SeaBIOS's path shapes from the real PCI slots, and
// the order by bootindex.
#include "vmm/boot_order.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

TEST(BootOrder, PathsNameTheSlotInHexAndTheFunctionOnlyWhenNotZero) {
  EXPECT_EQ(virtio_scsi_cdrom_boot_path(PciAddress{0, 3, 0}), "/pci@i0cf8/scsi@3/channel@0/disk@0,0");
  EXPECT_EQ(virtio_blk_boot_path(PciAddress{0, 0x1a, 0}), "/pci@i0cf8/scsi@1a/disk@0,0");
  EXPECT_EQ(ahci_cdrom_boot_path(PciAddress{0, 0x1f, 2}, 1), "/pci@i0cf8/pci8086,2922@1f,2/drive@1/disk@0");
  EXPECT_EQ(ahci_cdrom_boot_path(PciAddress{0, 6, 0}, 0), "/pci@i0cf8/pci8086,2922@6/drive@0/disk@0");
  EXPECT_EQ(pci_boot_path("scsi", PciAddress{0, 5, 2}), "/pci@i0cf8/scsi@5,2");
}

TEST(BootOrder, LowerBootindexFirstTiesInOrderAndTheKernelRomAheadOfAll) {
  const std::string order =
      build_bootorder("/rom@genroms/linuxboot_dma.bin", {{2, "/pci@i0cf8/scsi@4/disk@0,0"},
                                                         {0, "/pci@i0cf8/scsi@5/channel@0/disk@0,0"},
                                                         {2, "/pci@i0cf8/scsi@6/disk@0,0"}});
  EXPECT_EQ(
      order,
      std::string("/rom@genroms/linuxboot_dma.bin\n/pci@i0cf8/scsi@5/channel@0/disk@0,0\n/pci@i0cf8/scsi@4/disk@0,0\n"
                  "/pci@i0cf8/scsi@6/disk@0,0\0",
                  122));
  // One line: no newline, the NUL OVMF checks for last.
  EXPECT_EQ(build_bootorder("", {{0, "/pci@i0cf8/scsi@3/channel@0/disk@0,0"}}),
            std::string("/pci@i0cf8/scsi@3/channel@0/disk@0,0\0", 37));
  EXPECT_EQ(build_bootorder("", {}), "");
}

}  // namespace
}  // namespace hostvisor
