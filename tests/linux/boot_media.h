// Boot media for the firmware tests, made in the test from Debian packages:
// a GRUB rescue ISO (grub-mkrescue) and an installed disk (an MBR with
// GRUB's boot.img, GRUB's core.img in the gap before the first partition,
// and an ext4 root made with mke2fs -d), both holding a kernel and an
// initramfs and a grub.cfg that boots them on the serial console.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "guest/default_guest/default_guest.h"

namespace hostvisor::testing {

// Runs a shell command; returns its exit status, stdout+stderr in `output`.
int host_command(const std::string& command, std::string* output);

// What the media boot: `guest`'s kernel and initramfs, with `title` as the
// GRUB menu entry and `extra_cmdline` after the guest's command line.
struct BootMediaContents {
  guest::DefaultGuest guest;
  std::string title;
  std::string extra_cmdline;
  // More files for the medium: path inside it -> contents.
  std::map<std::string, std::string> files;
};

// A GRUB rescue ISO at `dir`/NAME.iso (grub-mkrescue; Debian's grub-common,
// grub-pc-bin, grub-efi-amd64-bin, xorriso and mtools). Returns its path, or
// "" with `error` set.
std::string make_grub_iso(const std::filesystem::path& dir, const std::string& name, const BootMediaContents& contents,
                          std::string* error);

// A qcow2 disk with an MBR, GRUB for BIOS and one ext4 partition holding
// /boot (kernel, initramfs, grub/grub.cfg) at `dir`/NAME.qcow2: no loop
// device, no grub-install. Returns its path, or "" with `error` set.
std::string make_installed_disk(const std::filesystem::path& dir, const std::string& name,
                                const BootMediaContents& contents, std::string* error);

}  // namespace hostvisor::testing
