// A Linux bzImage handed to firmware through fw_cfg (--kernel with
// --firmware), as QEMU hands one to SeaBIOS: the firmware's linuxboot option
// ROM copies the real-mode setup, the protected-mode kernel, the initrd and
// the command line to the addresses named here and enters the setup code in
// real mode (the 16-bit boot protocol, Documentation/arch/x86/boot.rst), so
// the kernel asks the firmware itself for the memory map.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/layout.h"
#include "base/result.h"

namespace hostvisor::arch {

// The boot protocol's fixed places for a loader that uses real mode.
constexpr uint64_t kFirmwareSetupAddress = 0x10000;    // setup sectors (boot_params' first part)
constexpr uint64_t kFirmwareCmdlineAddress = 0x20000;  // command line, after setup's heap
constexpr uint64_t kFirmwareKernelAddress = 0x100000;  // the protected-mode kernel
// Space firmware keeps for itself at the top of low RAM (its ACPI tables,
// SMBIOS and other tables); the initrd goes below it.
constexpr uint64_t kFirmwareTopReserve = 1 * kMiB;

struct FirmwareLinuxBoot {
  std::vector<uint8_t> setup;  // the setup sectors, header filled in for this boot
  std::vector<uint8_t> kernel;
  std::vector<uint8_t> initrd;
  std::string cmdline;  // without the NUL
  uint64_t initrd_address = 0;
};

// Splits a bzImage (boot protocol 2.02 or later, loaded high) and fills in
// its header: the loader type, the command line, the heap, the initrd.
Result<FirmwareLinuxBoot> prepare_firmware_linux_boot(std::span<const uint8_t> file, std::span<const uint8_t> initrd,
                                                      const std::string& cmdline, const MemoryLayout& layout);

}  // namespace hostvisor::arch
