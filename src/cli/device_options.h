// The device options of `hostvisor run` that pick where a device sits:
//   --disk FILE[,...][,transport=pci|mmio]
//   --net tap,ifname=NAME[,...][,transport=pci|mmio]
//   --vsock cid=N,uds=PATH[,transport=pci|mmio]
//   --console serial|virtio
// The transport key is common to every virtio device, so it is read here and
// the rest of each option goes to the device's own parser (block, net).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "vmm/machine_config.h"

namespace hostvisor::cli {

Result<VirtioTransport> parse_virtio_transport(const std::string& text);
// --disk FILE[,...][,transport=pci|mmio][,bootindex=N]
Result<DiskConfig> parse_disk_config(const std::string& text);
// --cdrom ISO[,bus=scsi|ahci][,bootindex=N] (",," is a literal comma in ISO).
Result<CdromConfig> parse_cdrom_config(const std::string& text);
Result<NetConfig> parse_net_config(const std::string& text);
Result<ConsoleDevice> parse_console_device(const std::string& text);
Result<VsockConfig> parse_vsock_config(const std::string& text);
// --share HOSTDIR,tag=TAG[,readonly=on|off][,cache=auto|always|never][,mount=GUESTPATH][,transport=pci|mmio]:
// HOSTDIR must be an existing directory (",," is a literal comma in it); TAG
// is 1 to 36 characters of [A-Za-z0-9_.-] (it travels on the guest's
// kernel command line to the default guest's init); GUESTPATH, where that
// init mounts it, is checked by guest::check_guest_mount_path.
Result<ShareConfig> parse_share_config(const std::string& text);
// The kernel command-line parameter that tells the default guest's init
// which tags to mount where: "hostvisor.shares=a,b:/home/u/proj" (a at
// /mnt/a); empty without shares.
std::string share_cmdline_parameter(const std::vector<ShareConfig>& shares);

// What identifies a VM started with `hostvisor run`, for deriving stable
// values from it: the kernel's absolute path and each disk image's, in
// order. The same command line in any working directory gives the same
// text; another kernel, another disk or another disk order gives another.
std::string run_vm_identity(const std::string& kernel_path, const std::vector<DiskConfig>& disks);

// Gives every NIC that has no mac= a MAC derived from `vm_identity` and its
// index among the NICs (--net none is not a NIC), so a VM keeps its MACs,
// and with them its DHCP leases, across restarts, and two NICs of one VM
// differ. An explicit mac= is kept as given.
void assign_stable_macs(const std::string& vm_identity, std::vector<NetConfig>& nets);

// --net with --restore: the snapshot's NICs with new host-side options.
// `given` has one option per NIC of `saved`, in order; only a user-mode
// NAT's hostfwd= and rate= may differ from the snapshot's (its network,
// ipv6=, restrict= and the MAC are what the guest already knows), so each
// clone of one snapshot can forward its own host ports.
Result<void> apply_restore_net_options(std::vector<NetConfig>& saved, const std::vector<std::string>& given);

}  // namespace hostvisor::cli
