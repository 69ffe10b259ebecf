#include "vmm/machine_config_codec.h"

#include "base/state_codec.h"
#include "block/disk_serial.h"

namespace hostvisor {

namespace {
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxDevices = 64;
}  // namespace

std::vector<uint8_t> encode_machine_config(const MachineConfig& config, const std::string& backend) {
  StateWriter out;
  out.put(kMachineConfigVersion);
  out.put_string(backend);
  out.put(config.memory_bytes);
  out.put(static_cast<uint32_t>(config.cpus));
  out.put(static_cast<uint8_t>(config.console));
  out.put_bool(config.debug_exit);
  out.put_string(config.kernel_path);
  out.put_string(config.initrd_path);
  out.put_string(config.cmdline);
  out.put(static_cast<uint32_t>(config.disks.size()));
  for (const DiskConfig& disk : config.disks) {
    out.put_string(disk.disk.path);
    out.put(static_cast<uint8_t>(disk.disk.format));
    out.put(static_cast<uint8_t>(disk.disk.cache));
    out.put_bool(disk.disk.read_only);
    out.put_bool(disk.disk.discard);
    out.put(static_cast<uint8_t>(disk.transport));
  }
  out.put(static_cast<uint32_t>(config.nets.size()));
  for (const NetConfig& net : config.nets) {
    out.put_string(net.text);
    out.put(static_cast<uint8_t>(net.transport));
  }
  const MemoryBackingOptions& backing = config.memory_backing;
  out.put(static_cast<uint8_t>(backing.huge_pages));
  out.put_bool(backing.lock);
  out.put_bool(backing.prealloc);
  out.put_bool(backing.merge);
  out.put_bool(backing.shared);
  out.put_bool(config.balloon.has_value());
  if (config.balloon) {
    out.put_bool(config.balloon->deflate_on_oom);
    out.put_bool(config.balloon->free_page_reporting);
    out.put(config.balloon->stats_interval_seconds);
    out.put(static_cast<uint8_t>(config.balloon->transport));
  }
  out.put_bool(config.vsock.has_value());
  if (config.vsock) {
    out.put(config.vsock->guest_cid);
    out.put_string(config.vsock->uds_path);
    out.put(static_cast<uint8_t>(config.vsock->transport));
  }
  out.put_string(config.qga_socket);
  for (const DiskConfig& disk : config.disks) out.put_string(disk.disk.serial);
  return out.take();
}

Result<SavedMachineConfig> decode_machine_config(std::span<const uint8_t> bytes) {
  StateReader in(bytes, "snapshot machine configuration");
  const uint32_t version = in.get<uint32_t>();
  if (in.ok() && (version == 0 || version > kMachineConfigVersion))
    return Error(ErrorCode::kUnsupported, "snapshot machine configuration version " + std::to_string(version) +
                                              " is not one this hostvisor reads (" +
                                              std::to_string(kMachineConfigVersion) + ")");
  SavedMachineConfig saved;
  MachineConfig& config = saved.config;
  saved.backend = in.get_string(16);
  config.memory_bytes = in.get<uint64_t>();
  config.cpus = in.get<uint32_t>();
  const uint8_t console = in.get<uint8_t>();
  if (console > static_cast<uint8_t>(ConsoleDevice::kVirtio)) in.fail("unknown console device");
  config.console = static_cast<ConsoleDevice>(console);
  config.debug_exit = in.get_bool();
  config.kernel_path = in.get_string(kMaxPath);
  config.initrd_path = in.get_string(kMaxPath);
  config.cmdline = in.get_string(kMaxPath);
  auto transport = [&in]() {
    const uint8_t value = in.get<uint8_t>();
    if (value > static_cast<uint8_t>(VirtioTransport::kMmio)) in.fail("unknown virtio transport");
    return static_cast<VirtioTransport>(value);
  };
  const uint32_t disks = in.get<uint32_t>();
  if (disks > kMaxDevices) in.fail(std::to_string(disks) + " disks");
  for (uint32_t i = 0; i < disks && in.ok(); ++i) {
    DiskConfig disk;
    disk.disk.path = in.get_string(kMaxPath);
    const uint8_t format = in.get<uint8_t>(), cache = in.get<uint8_t>();
    if (format > static_cast<uint8_t>(block::ImageFormat::kQcow2)) in.fail("unknown disk format");
    if (cache > static_cast<uint8_t>(block::CacheMode::kUnsafe)) in.fail("unknown cache mode");
    disk.disk.format = static_cast<block::ImageFormat>(format);
    disk.disk.cache = static_cast<block::CacheMode>(cache);
    disk.disk.read_only = in.get_bool();
    disk.disk.discard = in.get_bool();
    disk.transport = transport();
    config.disks.push_back(disk);
  }
  const uint32_t nets = in.get<uint32_t>();
  if (nets > kMaxDevices) in.fail(std::to_string(nets) + " NICs");
  for (uint32_t i = 0; i < nets && in.ok(); ++i) {
    NetConfig net;
    net.text = in.get_string(kMaxPath);
    net.transport = transport();
    if (!in.ok()) break;
    auto option = net::parse_net_option(net.text);
    if (!option) return std::move(option).error().with_context("snapshot machine configuration");
    net.net = std::move(*option);
    config.nets.push_back(std::move(net));
  }
  if (version >= 2) {
    MemoryBackingOptions& backing = config.memory_backing;
    const uint8_t huge_pages = in.get<uint8_t>();
    if (huge_pages > static_cast<uint8_t>(HugePages::kHugetlb)) in.fail("unknown huge page setting");
    backing.huge_pages = static_cast<HugePages>(huge_pages);
    backing.lock = in.get_bool();
    backing.prealloc = in.get_bool();
    backing.merge = in.get_bool();
    backing.shared = in.get_bool();
  }
  if (version >= 3 && in.get_bool()) {
    BalloonConfig balloon;
    balloon.deflate_on_oom = in.get_bool();
    balloon.free_page_reporting = in.get_bool();
    balloon.stats_interval_seconds = in.get<uint32_t>();
    balloon.transport = transport();
    config.balloon = balloon;
  }
  if (version >= 4 && in.get_bool()) {
    VsockConfig vsock;
    vsock.guest_cid = in.get<uint64_t>();
    vsock.uds_path = in.get_string(kMaxPath);
    vsock.transport = transport();
    config.vsock = std::move(vsock);
  }
  if (version >= 5) config.qga_socket = in.get_string(kMaxPath);
  if (version >= 6) {
    for (DiskConfig& disk : config.disks) {
      disk.disk.serial = in.get_string(20);
      if (in.ok() && !disk.disk.serial.empty() && !block::check_disk_serial(disk.disk.serial))
        in.fail("a disk serial of characters a serial cannot hold");
    }
  }
  HV_TRY(in.finish());
  if (auto kind = choose_memory_kind(config.memory_backing); !kind)
    return std::move(kind).error().with_context("snapshot machine configuration");
  if (saved.backend == "kvm") {
    config.accel = Accel::kKvm;
  } else if (saved.backend == "emu") {
    config.accel = Accel::kEmu;
  } else {
    return Error(ErrorCode::kCorrupt, "snapshot machine configuration: unknown backend '" + saved.backend + "'");
  }
  if (config.cpus == 0 || config.cpus > kMaxVcpus)
    return Error(ErrorCode::kCorrupt, "snapshot machine configuration: " + std::to_string(config.cpus) + " vCPUs");
  return saved;
}

}  // namespace hostvisor
