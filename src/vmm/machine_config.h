// Everything `hostvisor run` was asked for, validated by the CLI.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "block/disk_option.h"
#include "hv/accel.h"
#include "memory/memory_backing.h"
#include "net/net_option.h"
#include "vmm/firmware_image.h"

namespace hostvisor {

// How a virtio device reaches the guest: a PCI function (the default, found
// by PCI enumeration) or a virtio-mmio register block (found in the ACPI DSDT).
enum class VirtioTransport { kPci, kMmio };

// Which guest device the host terminal types into. Both the 16550 UART and
// the virtio console print to the terminal; only one reads from it.
enum class ConsoleDevice { kSerial, kVirtio };

struct DiskConfig {
  block::DiskOption disk;
  VirtioTransport transport = VirtioTransport::kPci;
  // bootindex=N: where the disk comes in the firmware's boot order (lower
  // first); none: after every device that has one.
  std::optional<uint32_t> bootindex;
};

// The controller a --cdrom drive sits on: virtio-scsi, its own PCI
// function with the drive at target 0, LUN 0; or AHCI, one controller
// whose ports 0-5 hold the bus=ahci drives in order, each an ATAPI device.
enum class CdromBus { kScsi, kAhci };

// --cdrom ISO[,bus=scsi|ahci][,bootindex=N]: a read-only CD-ROM drive with the
// image as its medium.
struct CdromConfig {
  std::string path;
  CdromBus bus = CdromBus::kScsi;
  std::optional<uint32_t> bootindex;
};

struct NetConfig {
  net::NetOption net;
  VirtioTransport transport = VirtioTransport::kPci;
  // The option as given (without transport=), which a snapshot keeps to
  // open the same backend at restore; net::parse_net_option() reads it.
  std::string text;
};

// A virtio-vsock device (--vsock): the guest's CID and the unix socket its
// host side listens on (guest-initiated streams to port P go to uds_path_P).
struct VsockConfig {
  uint64_t guest_cid = 3;
  std::string uds_path;
  VirtioTransport transport = VirtioTransport::kPci;
  // When a live program holds uds_path, listen on a path of this process's
  // own beside it instead of failing (a second default guest, a clone
  // beside its original). Not saved: it is this run's choice.
  bool own_path_if_busy = false;
};

// A file for the guest's fw_cfg (--fw-cfg): its contents are `text`, or
// the host file `host_path` when that is set.
struct FwCfgFileConfig {
  std::string name;  // opt/...
  std::string host_path;
  std::string text;
};

// --balloon: a virtio-balloon device (the host control of how much RAM the
// guest holds, and free page reporting).
struct BalloonConfig {
  bool deflate_on_oom = false;
  bool free_page_reporting = true;
  uint32_t stats_interval_seconds = 5;  // 0: no statistics queue
  VirtioTransport transport = VirtioTransport::kPci;
};

// --share HOSTDIR,tag=TAG[,readonly=on][,cache=auto|always|never]: a host
// directory the guest mounts with `mount -t virtiofs TAG DIR` (virtio-fs,
// served in process). cache: how long the guest may trust what it cached
// (auto: 1 s; always: a day, and file pages kept across opens; never: no
// caching, every read and write goes to the host).
enum class ShareCache { kAuto, kAlways, kNever };
struct ShareConfig {
  std::string host_dir;
  std::string tag;
  bool read_only = false;
  ShareCache cache = ShareCache::kAuto;
  // Where the default guest's init mounts it (empty: /mnt/TAG); only the
  // guest's command line carries it.
  std::string guest_mount;
  VirtioTransport transport = VirtioTransport::kPci;
};

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: none
  std::string cmdline;
  uint64_t memory_bytes = 256ull << 20;
  MemoryBackingOptions memory_backing;  // --memory SIZE,OPTIONS
  unsigned cpus = 1;
  Accel accel = Accel::kAuto;
  bool debug_exit = false;                         // isa-debug-exit compatible device at port 0xf4
  ConsoleDevice console = ConsoleDevice::kSerial;  // what the terminal's input feeds
  std::vector<DiskConfig> disks;                   // virtio-blk devices, in order
  std::vector<CdromConfig> cdroms;                 // CD-ROM drives, in order
  std::vector<NetConfig> nets;                     // virtio-net devices, in order
  std::vector<FwCfgFileConfig> fw_cfg_files;       // user files in fw_cfg
  std::optional<BalloonConfig> balloon;            // none: no balloon
  std::optional<VsockConfig> vsock;                // virtio-vsock, if any
  std::vector<ShareConfig> shares;                 // virtio-fs devices, in order
  // --qga PATH: the virtio console gets the named port org.qemu.guest_agent.0
  // (MULTIPORT), its host end a unix socket hostvisor listens on at PATH.
  std::string qga_socket;
  // --firmware: what runs at the reset vector. kNone: the kernel is loaded
  // and entered directly (kernel_path is then required).
  FirmwareKind firmware = FirmwareKind::kNone;
  // --firmware uefi,vars=PATH (or the run's temporary copy): OVMF's
  // variable store, written through by the flash device.
  std::string uefi_vars;
  // --firmware-log PATH: the firmware's debug-port log (port 0x402) is
  // appended there; empty: dropped.
  std::string firmware_log;
  // When a live program holds qga_socket, listen on a path of this
  // process's own beside it (a clone beside its original). Not saved.
  bool qga_own_path_if_busy = false;
};

constexpr unsigned kMaxVcpus = 255;  // xAPIC ids are 8 bits; 255 is broadcast

}  // namespace hostvisor
