// The firmware's boot order (fw_cfg `bootorder`): one OpenFirmware device
// path a line, first boots first. SeaBIOS matches each device it finds
// against these lines by a glob of its PCI slot and, below it, the SCSI
// target/LUN (its boot.c: bootprio_find_pci_device,
// _scsi_device), so a path need only get those numbers right;
// the node names follow QEMU's.
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

// The `bootorder` file: `first` (a kernel's option ROM, or empty) and then
// the candidates by bootindex (ties keep their order), one a line.
std::string build_bootorder(const std::string& first, std::vector<BootCandidate> candidates);

}  // namespace hostvisor
