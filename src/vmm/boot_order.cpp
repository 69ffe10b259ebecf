#include "vmm/boot_order.h"

#include <algorithm>
#include <cstdio>

namespace hostvisor {

std::string pci_boot_path(const char* name, PciAddress address) {
  // The root bus is what SeaBIOS calls /pci@i0cf8 (its FW_PCI_DOMAIN), on
  // Q35 as on i440FX; slot and function in hex, the function only if not 0.
  char text[64];
  if (address.function != 0) {
    std::snprintf(text, sizeof text, "/pci@i0cf8/%s@%x,%x", name, address.device, address.function);
  } else {
    std::snprintf(text, sizeof text, "/pci@i0cf8/%s@%x", name, address.device);
  }
  return text;
}

std::string virtio_blk_boot_path(PciAddress address) { return pci_boot_path("scsi", address) + "/disk@0,0"; }

std::string virtio_scsi_cdrom_boot_path(PciAddress address) {
  return pci_boot_path("scsi", address) + "/channel@0/disk@0,0";
}

std::string ahci_cdrom_boot_path(PciAddress address, unsigned port) {
  char tail[32];
  std::snprintf(tail, sizeof tail, "/drive@%x/disk@0", port);
  return pci_boot_path("pci8086,2922", address) + tail;
}

std::string build_bootorder(const std::string& first, std::vector<BootCandidate> candidates) {
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const BootCandidate& a, const BootCandidate& b) { return a.bootindex < b.bootindex; });
  std::vector<std::string> lines;
  if (!first.empty()) lines.push_back(first);
  for (const BootCandidate& candidate : candidates) lines.push_back(candidate.path);
  if (lines.empty()) return "";
  // QEMU's format: lines joined by newlines, then a NUL. OVMF refuses a
  // file whose last byte is not NUL (and then keeps its own order);
  // SeaBIOS reads up to the NUL.
  std::string out;
  for (const std::string& line : lines) out += (out.empty() ? "" : "\n") + line;
  out.push_back('\0');
  return out;
}

}  // namespace hostvisor
