// The device options of `hostvisor run` that pick where a device sits:
//   --disk FILE[,...][,transport=pci|mmio]
//   --net tap,ifname=NAME[,...][,transport=pci|mmio]
//   --console serial|virtio
// The transport key is common to every virtio device, so it is read here and
// the rest of each option goes to the device's own parser (block, net).
#pragma once

#include <string>

#include "base/result.h"
#include "vmm/machine_config.h"

namespace hostvisor::cli {

Result<VirtioTransport> parse_virtio_transport(const std::string& text);
Result<DiskConfig> parse_disk_config(const std::string& text);
Result<NetConfig> parse_net_config(const std::string& text);
Result<ConsoleDevice> parse_console_device(const std::string& text);

}  // namespace hostvisor::cli
