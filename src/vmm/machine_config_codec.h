// The machine configuration a snapshot keeps in its header: what a restore
// needs to build the same machine again (RAM, vCPUs, the backend, console,
// devices, disk images and NICs). The kernel and its command line are kept
// for the record only: a restored guest's kernel is already in RAM.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "vmm/machine_config.h"

namespace hostvisor {

// 2 added the memory backing options, 3 the balloon, 4 the vsock device,
// 5 the qemu-guest-agent port's socket (--qga), 6 each disk's serial; older
// versions are read with the defaults (no balloon, no vsock, no agent port,
// the hostvisor-diskN serials).
inline constexpr uint32_t kMachineConfigVersion = 6;

// `backend` is the backend the machine ran on ("kvm", "emu").
std::vector<uint8_t> encode_machine_config(const MachineConfig& config, const std::string& backend);

struct SavedMachineConfig {
  MachineConfig config;  // accel is the backend it ran on
  std::string backend;
};
// Untrusted bytes: every field is checked, and the disk and NIC options are
// parsed again as on the command line.
Result<SavedMachineConfig> decode_machine_config(std::span<const uint8_t> bytes);

}  // namespace hostvisor
