// The firmware's boot order (fw_cfg `bootorder`): one OpenFirmware device
// path a line, first boots first. SeaBIOS matches each device it finds
// against these lines by a glob of its PCI slot and, below it, the SCSI
// target/LUN or the ATA port (its boot.c: bootprio_find_pci_device,
// _scsi_device, _ata_device), so a path need only get those numbers
// right; the node names follow QEMU's, which OVMF's QemuBootOrderLib
// matches by name (scsi/channel/disk, pci8086,2922/drive/disk) to turn the
// path into a UEFI device path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "devices/pci/pci_device.h"

namespace hostvisor {

// A device that may be booted, at `bootindex` (lower first).
struct BootCandidate {
  uint32_t bootindex = 0;
  std::string path;
};

// "/pci@i0cf8/NAME@SLOT[,FUNCTION]": a function on the root bus.
std::string pci_boot_path(const char* name, PciAddress address);
// A virtio-blk disk.
std::string virtio_blk_boot_path(PciAddress address);
// The CD-ROM at target 0, LUN 0 of a virtio-scsi controller.
std::string virtio_scsi_cdrom_boot_path(PciAddress address);
// The ATAPI drive on port `port` of an AHCI controller:
// /pci@i0cf8/pci8086,2922@S/drive@P/disk@0. SeaBIOS matches any node name
// before the slot ("*@S/drive@P/disk@0", its bootprio_find_ata_device);
// OVMF's QemuBootOrderLib needs QEMU's name for ICH9's SATA function,
// pci8086,2922, and makes it Pci(S,0)/Sata(P,0,0).
std::string ahci_cdrom_boot_path(PciAddress address, unsigned port);

// The `bootorder` file: `first` (a kernel's option ROM, or empty) and then
// the candidates by bootindex (ties keep their order), one a line, ended by
// a NUL as QEMU writes it (OVMF insists on it); empty with no line at all.
std::string build_bootorder(const std::string& first, std::vector<BootCandidate> candidates);

}  // namespace hostvisor
