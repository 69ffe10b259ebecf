// Everything `hostvisor run` was asked for, validated by the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "block/disk_option.h"
#include "hv/accel.h"
#include "net/net_option.h"

namespace hostvisor {

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: none
  std::string cmdline;
  uint64_t memory_bytes = 256ull << 20;
  unsigned cpus = 1;
  Accel accel = Accel::kAuto;
  bool debug_exit = false;               // isa-debug-exit compatible device at port 0xf4
  std::vector<block::DiskOption> disks;  // virtio-blk on PCI, in order (vda, vdb, ...)
  std::vector<net::NetOption> nets;      // virtio-net on PCI, in order (eth0, ...)
};

constexpr unsigned kMaxVcpus = 255;  // xAPIC ids are 8 bits; 255 is broadcast

}  // namespace hostvisor
