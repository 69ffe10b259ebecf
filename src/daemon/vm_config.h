// What a VM in the library is: the options its `hostvisor run` gets, kept as
// vms/NAME/config.json. The JSON a client sends to create or update a VM is
// parsed here, so every field is checked before anything touches the disk.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::daemon {

struct VmDisk {
  std::string path;  // absolute, or relative to the VM's directory (disks/...)
  std::string format;  // "raw" or "qcow2"; empty: probed
  bool readonly = false;
  std::string serial;  // what the guest reads as its serial; empty: hostvisor-diskN
};

// The serial of the default guest's data disk, by which its /init finds the
// disk to format and mount at /data.
inline constexpr char kDataDiskSerial[] = "hostvisor-data";

// A host directory the VM sees over virtio-fs (hostvisor run --share).
struct VmShare {
  std::string host_path;  // absolute, an existing directory when the VM is created or updated
  std::string tag;        // [A-Za-z0-9_.-]{1,36}, unique in the VM
  bool readonly = false;
  std::string mount;  // where the default guest mounts it; empty: /mnt/TAG
};

struct VmConfig {
  std::string name;
  std::string memory = "512M";  // hostvisor run --memory
  uint32_t cpus = 1;
  std::string accel = "auto";
  std::string console = "serial";
  std::string kernel, initrd, append;  // empty kernel: the default guest
  std::vector<VmDisk> disks;
  std::vector<VmShare> shares;
  std::vector<std::string> nets{"user"};  // hostvisor run --net values
  bool balloon = true;
  uint64_t data_disk_bytes = 0;  // the default guest's data disk, created with the VM (0: none)
  std::string created;           // ISO 8601, UTC

  bool default_guest() const { return kernel.empty(); }
};

// Parses a create request (name required; everything else defaulted).
Result<VmConfig> vm_config_from_json(const nlohmann::json& json);
// Applies an update (any of the fields but name) to `config`.
Result<void> apply_vm_update(VmConfig& config, const nlohmann::json& update);
nlohmann::json vm_config_to_json(const VmConfig& config);

// A port forward added to a running VM, kept in its config so the next boot
// has it too: hostfwd=FORWARD (PROTO:HOSTADDR:HOSTPORT-GUESTADDR:GUESTPORT)
// joins the --net value of NIC `nic` (counted as hostvisor run counts NICs:
// a "none" is none). Fails if there is no such NIC.
Result<void> add_net_forward(VmConfig& config, uint32_t nic, const std::string& forward);
// Drops NIC `nic`'s forward of host port PROTO HOSTADDR:HOSTPORT (an empty
// HOSTADDR in the config is 127.0.0.1); false if it had none.
bool remove_net_forward(VmConfig& config, uint32_t nic, const std::string& proto, const std::string& host_addr,
                        uint16_t host_port);

// The `hostvisor run` arguments (after "run") of a fresh boot of `config`
// whose directory is vm_dir.
std::vector<std::string> boot_arguments(const VmConfig& config, const std::string& vm_dir);

}  // namespace hostvisor::daemon
