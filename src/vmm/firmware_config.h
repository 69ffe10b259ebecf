// The machine's facts for firmware, in the fw_cfg device
// (devices/fw_cfg/): CPUs, RAM, the e820 map, the boot order and the files
// SeaBIOS and OVMF look for: the ACPI tables with their loader script and
// the SMBIOS tables. Kept apart from machine.cpp so the machine
// only calls add_fw_cfg().
#pragma once

#include <memory>
#include <vector>

#include "base/result.h"
#include "vmm/boot_order.h"
#include "vmm/machine_config.h"

namespace hostvisor {

class Bus;
class FwCfg;
class GuestMemory;
namespace arch {
struct MemoryLayout;
}
namespace acpi {
struct PlatformDescription;
}

// How long firmware waits after finding nothing to boot before it resets
// (etc/boot-fail-wait, in milliseconds as SeaBIOS reads it and as QEMU's
// -boot reboot-timeout sets it); QEMU's default is to wait for ever, which
// leaves a headless user with a hung VM.
constexpr uint32_t kBootFailWaitMilliseconds = 5000;

// QEMU's option ROM that boots a kernel handed over in fw_cfg, where Debian
// puts it (package qemu-system-data), and the fw_cfg file SeaBIOS runs it
// from (genroms/: option ROMs to run at POST).
inline constexpr const char* kLinuxBootRomPath = "/usr/share/qemu/linuxboot_dma.bin";
inline constexpr const char* kLinuxBootRomFile = "genroms/linuxboot_dma.bin";

// Writes the SMBIOS tables where a guest booted without firmware looks for
// them: the entry point at arch::kSmbiosStart in the F-segment.
Result<void> write_smbios_tables(GuestMemory& memory, const MachineConfig& config, const arch::MemoryLayout& layout);

// The largest --fw-cfg file: the guest reads it through a byte port, and
// the device keeps it in host memory for the VM's life.
constexpr uint64_t kMaxUserFileSize = 64ull << 20;

// Fills a fw_cfg device for `config` on `layout` and puts it on `pio_bus` at
// arch::kFwCfgPort; `platform` is what the ACPI tables describe, the same
// for direct boot and firmware. `memory` is where its DMA reads and writes.
// `boot` are the devices given a bootindex, for `bootorder`.
Result<std::shared_ptr<FwCfg>> add_fw_cfg(Bus& pio_bus, GuestMemory& memory, const MachineConfig& config,
                                          const arch::MemoryLayout& layout, const acpi::PlatformDescription& platform,
                                          const std::vector<BootCandidate>& boot);

}  // namespace hostvisor
