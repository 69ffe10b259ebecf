#include "vmm/machine.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "agent/qga/qga_client.h"
#include "arch/x86_64/acpi/acpi_tables.h"
#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "base/log.h"
#include "base/size.h"
#include "block/image_open.h"
#include "devices/acpi/pm_block.h"
#include "devices/acpi/vm_generation_id.h"
#include "devices/fw_cfg/fw_cfg.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/debug_console.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/port_61.h"
#include "devices/legacy/serial_8250.h"
#include "devices/pci/pci_config_io.h"
#include "devices/pci/pci_ecam.h"
#include "devices/pci/pci_host_bridge.h"
#include "devices/virtio/balloon/virtio_balloon.h"
#include "devices/virtio/blk/virtio_blk.h"
#include "devices/virtio/console/virtio_console.h"
#include "devices/virtio/fs/virtio_fs.h"
#include "devices/virtio/net/virtio_net.h"
#include "devices/virtio/pci/virtio_pci_device.h"
#include "devices/virtio/rng/virtio_rng.h"
#include "devices/virtio/scsi/virtio_scsi.h"
#include "devices/ahci/ahci_controller.h"
#include "devices/virtio/vsock/virtio_vsock.h"
#include "devices/virtio/vsock/vsock_unix_socket.h"
#include "hv/irqchip_state.h"
#include "hv/vcpu_state.h"
#include "net/net_backend_factory.h"
#include "net/slirp/slirp_backend.h"
#include "snapshot/memory_image.h"
#include "snapshot/snapshot_reader.h"
#include "snapshot/snapshot_writer.h"
#include "vmm/console.h"
#include "vmm/console_port_socket.h"
#include "vmm/disk_snapshots.h"
#include "vmm/firmware_config.h"
#include "devices/flash/cfi_flash.h"
#include "devices/pci/ich9_lpc_bridge.h"
#include "vmm/legacy_devices.h"
#include "vmm/machine_config_codec.h"

namespace hostvisor {

namespace {
// The port qemu-guest-agent opens (qemu-ga -m virtio-serial looks for it).
constexpr const char* kQgaPortName = "org.qemu.guest_agent.0";
}  // namespace

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& config, StopSignals& signals,
                                                 const MachineConsole& console) {
  std::unique_ptr<Machine> machine(new Machine(config, signals, console));
  HV_TRY(machine->build(nullptr, RestoreOptions{}));
  return machine;
}

Result<std::unique_ptr<Machine>> Machine::restore(const MachineConfig& config, const snapshot::Snapshot& snapshot,
                                                  const RestoreOptions& options, StopSignals& signals,
                                                  const MachineConsole& console) {
  std::unique_ptr<Machine> machine(new Machine(config, signals, console));
  auto built = machine->build(&snapshot, options);
  if (!built) return std::move(built).error().with_context("restoring " + snapshot.dir());
  // The guest's wall clock stopped at the snapshot; a clone also shares its
  // RNG state with every other run of it.
  machine->restore_sync_reason_ = options.clone ? "restoring a clone" : "a restore";
  machine->restore_reseed_ = options.clone;
  return machine;
}

Machine::~Machine() {
  runner_.reset();  // stops and joins the vCPU threads
  if (event_loop_) event_loop_->stop();
}

Result<void> Machine::build(const snapshot::Snapshot* snapshot, const RestoreOptions& options) {
  event_loop_ = HV_TRY(EventLoop::create());
  if (config_.cpus == 0 || config_.cpus > kMaxVcpus)
    return Error(ErrorCode::kInvalidArgument,
                 "--cpus " + std::to_string(config_.cpus) + ": must be between 1 and " + std::to_string(kMaxVcpus));

  AccelChoice choice = HV_TRY(choose_accel(config_.accel, probe_host_virtualization()));
  accel_reason_ = choice.reason;
  hypervisor_ = HV_TRY(create_hypervisor(choice.accel));

  const arch::MemoryLayout layout = HV_TRY(arch::memory_layout(config_.memory_bytes));
  if (snapshot) {
    memory_ = HV_TRY(restore_memory(layout, *snapshot, options.mode));
  } else {
    std::vector<MemoryRegionSpec> regions = layout.regions();
    std::vector<uint8_t> bios;
    std::optional<UefiFlash> uefi;
    if (config_.firmware == FirmwareKind::kUefi) {
      uefi = HV_TRY(load_uefi_flash(config_.uefi_vars));
      regions.push_back(firmware_rom_region(uefi->code.size()));
    }
    if (config_.firmware == FirmwareKind::kBios) {
      bios = HV_TRY(load_bios_image(kSeabiosPath, "seabios"));
      regions.push_back(firmware_rom_region(bios.size()));
    }
    memory_ = HV_TRY(GuestMemory::create(regions, config_.memory_backing));
    if (!bios.empty()) HV_TRY(place_bios_image(memory_, bios));
    if (uefi) HV_TRY(add_uefi_flash(std::move(*uefi)));
  }
  for (const std::string& warning : memory_.host_warnings()) HV_LOG_WARN("--memory: {}", warning);

  vm_ = HV_TRY(hypervisor_->create_vm(VmConfig{config_.cpus}));
  HV_TRY(vm_->map_memory(memory_));
  memory_.set_dma_write_observer(
      [vm = vm_.get()](GuestAddress at, uint64_t length) { vm->dma_written(at.value(), length); });

  // The stand-in answers a terminal's queries where stdin and stdout are no
  // terminal; a headless VM's console attachments are the terminal.
  if (!console_options_.headless && TerminalStandIn::needed()) terminal_stand_in_ = HV_TRY(TerminalStandIn::create());
  LegacyDevices legacy = HV_TRY(add_legacy_devices(
      pio_bus_, vm_->interrupts(), *this,
      LegacyOptions{.debug_exit = config_.debug_exit,
                    .serial_output = [this](std::span<const uint8_t> bytes) { console_write(bytes); }}));
  serial_ = std::move(legacy.serial);
  rtc_ = std::move(legacy.rtc);
  add_cpu_components();
  components_.push_back(device_state_component("serial", serial_));
  components_.push_back(device_state_component("rtc", rtc_));
  components_.push_back(device_state_component("i8042", legacy.i8042));
  components_.push_back(device_state_component("port61", legacy.port61));
  virtio_mmio_ = std::make_unique<VirtioMmioSlots>(mmio_bus_, *vm_, *event_loop_, memory_);
  HV_LOG_INFO("virtio-mmio: notifies {}", virtio_mmio_->notify_fast_path() ? "through ioeventfds on the event loop"
                                                                           : "as exits on the vCPU threads");
  HV_TRY(add_pci_devices());

  // Firmware installs the tables itself, from fw_cfg (and the ISA BIOS
  // area they would go to holds the BIOS).
  HV_TRY(add_firmware_tables(layout, /*write_tables=*/snapshot == nullptr && !has_firmware()));
  if (has_firmware()) HV_TRY(add_firmware_debug_console());

  if (snapshot) {
    for (unsigned i = 0; i < config_.cpus; ++i) vcpus_.push_back(HV_TRY(vm_->create_vcpu(i)));
    HV_TRY(restore_components(*snapshot));
    if (options.clone) {
      // Its driver keeps the snapshot's MAC until the guest agent moves it
      // (GuestClockSync, once running).
      for (auto& net : nets_) {
        const net::MacAddress fresh = net::random_local_mac_address();
        clone_macs_.push_back({net->mac(), fresh});
        net->set_mac(fresh);
      }
      // The guest learns it is a copy (an SCI once its ACPI is up again).
      HV_TRY(vm_generation_id_->change());
    }
    // The snapshot's CID, unless this run was given another (a clone's).
    if (vsock_ && vsock_->guest_cid() != config_.vsock->guest_cid) vsock_->set_guest_cid(config_.vsock->guest_cid);
  } else if (has_firmware()) {
    // Every vCPU starts in its reset state: the BSP at the reset vector in
    // the ROM, the others waiting for the firmware's INIT-SIPI.
    for (unsigned i = 0; i < config_.cpus; ++i) vcpus_.push_back(HV_TRY(vm_->create_vcpu(i)));
  } else {
    HV_TRY(load_kernel_and_boot_vcpus(layout));
  }
  std::vector<Vcpu*> vcpus;
  for (auto& vcpu : vcpus_) vcpus.push_back(vcpu.get());
  runner_ = std::make_unique<VcpuRunner>(std::move(vcpus), pio_bus_, mmio_bus_);
  // Building read the kernel and initrd into heap buffers (megabytes) and
  // freed them; glibc keeps freed heap memory unless told, and after a large
  // free it raises its thresholds so that it keeps even more. Hand it back
  // now: it is most of the VMM's own footprint otherwise.
  ::malloc_trim(0);
  return {};
}

Result<void> Machine::load_kernel_and_boot_vcpus(const arch::MemoryLayout& layout) {
  const std::string kernel = HV_TRY(read_file(config_.kernel_path));
  std::string initrd;
  if (!config_.initrd_path.empty()) initrd = HV_TRY(read_file(config_.initrd_path));
  arch::KernelImage image;
  image.kernel = std::span(reinterpret_cast<const uint8_t*>(kernel.data()), kernel.size());
  image.initrd = std::span(reinterpret_cast<const uint8_t*>(initrd.data()), initrd.size());
  image.cmdline = config_.cmdline;
  image.kernel_name = config_.kernel_path;
  image.initrd_name = config_.initrd_path;
  image.acpi_rsdp = acpi_rsdp_;
  auto boot = arch::load_kernel(memory_, layout, image);
  if (!boot) return std::move(boot).error().with_context(config_.kernel_path);
  HV_LOG_INFO("{}: {}", config_.kernel_path, boot->description);

  for (unsigned i = 0; i < config_.cpus; ++i) vcpus_.push_back(HV_TRY(vm_->create_vcpu(i)));
  Vcpu& bsp = *vcpus_[0];
  HV_TRY(bsp.set_system_registers(boot->sregs));
  HV_TRY(bsp.set_registers(boot->regs));
  return {};
}

Result<void> Machine::add_pci_devices() {
  bar_mapper_ = std::make_unique<BusBarMapper>(mmio_bus_, pio_bus_);
  fastpath_ = std::make_unique<VirtioPciFastPath>(*bar_mapper_, *vm_, *event_loop_);
  HV_LOG_INFO("virtio-pci: notifies {}, MSI-X {}",
              fastpath_->notify_fast_path() ? "through ioeventfds on the event loop" : "as exits on the vCPU threads",
              fastpath_->msi_fast_path() ? "through irqfds" : "through the interrupt controller");
  pci_root_ = std::make_unique<PciRoot>(&vm_->interrupts(), fastpath_.get());
  auto config_io = std::make_shared<PciConfigIo>(*pci_root_, this);
  HV_TRY(pio_bus_.insert(config_io, pci::kConfigIoBase, pci::kConfigIoSize));
  components_.push_back(device_state_component("pci-config-io", config_io));
  components_.push_back(device_state_component("pci-00:00.0-host-bridge", pci_root_->host_bridge()));
  HV_TRY(mmio_bus_.insert(std::make_shared<PciEcam>(*pci_root_), pci::kEcamBase, pci::kEcamSize));
  if (config_.firmware == FirmwareKind::kUefi) {
    // OVMF finds the PM timer through it (ich9_lpc_bridge.h).
    auto lpc = std::make_shared<Ich9LpcBridge>(arch::kPmEventPort);
    HV_TRY(pci_root_->add_device(lpc, ich9::kLpcSlot));
    components_.push_back(device_state_component("pci-00:1f.0-lpc-bridge", lpc));
  }

  // Every machine has an entropy source: guests otherwise wait for
  // randomness at boot (Linux's crng init), and it costs nothing idle.
  HV_TRY(plug_virtio_pci(std::make_shared<VirtioRng>()));

  // virtio-console: hvc0, the console of guests booted with console=hvc0;
  // its output shares the terminal with the serial port, and with
  // --console virtio it gets the terminal's input.
  // With --qga it also has qemu-guest-agent's port, whose host end is a
  // unix socket (MULTIPORT; without --qga the console stays single-port).
  std::vector<VirtioConsole::NamedPort> named_ports;
  if (!config_.qga_socket.empty()) {
    auto listening = ConsolePortSocket::listen(config_.qga_socket);
    if (!listening && listening.error().code() == ErrorCode::kBusy && config_.qga_own_path_if_busy) {
      // The snapshot's socket, held by its original: this run gets its own.
      const std::string own = vsock::own_socket_path(config_.qga_socket, ::getpid());
      HV_LOG_WARN("qemu-guest-agent port: {} is in use (another VM: the snapshot's original?); listening on {}",
                  config_.qga_socket, own);
      config_.qga_socket = own;
      listening = ConsolePortSocket::listen(own);
    }
    qga_socket_ = HV_TRY(std::move(listening));
    HV_LOG_INFO("qemu-guest-agent port {}: listening on {}", kQgaPortName, config_.qga_socket);
    named_ports.push_back({kQgaPortName, qga_socket_->sink(), [](bool open) {
                             HV_LOG_INFO("qemu-guest-agent port: the guest {} it", open ? "opened" : "closed");
                           }});
  }
  virtio_console_ = HV_TRY(VirtioConsole::create([this](std::span<const uint8_t> bytes) { console_write(bytes); },
                                                 VirtioConsole::kDefaultInputCapacity, std::move(named_ports)));
  if (qga_socket_) HV_TRY(qga_socket_->attach(*event_loop_, virtio_console_, 1));
  HV_TRY(plug_virtio_pci(virtio_console_));

  for (const NetConfig& nic : config_.nets) {
    if (std::holds_alternative<net::NoNetOption>(nic.net)) continue;
    HV_TRY(add_net(nic.net, nic.transport));
  }

  if (config_.vsock) HV_TRY(add_vsock(*config_.vsock));

  for (size_t i = 0; i < config_.disks.size(); ++i) {
    // The serial is what the guest sees in /sys/block/vdX/serial.
    // Asynchronous I/O: a vCPU (or the event loop) only submits; the event
    // loop answers when the block layer completes the request.
    auto blk = HV_TRY(VirtioBlk::open(config_.disks[i].disk, config_.disks[i].disk.serial.empty()
                                                                      ? "hostvisor-disk" + std::to_string(i)
                                                                      : config_.disks[i].disk.serial));
    HV_TRY(watch_blk_completions(blk));
    blks_.push_back(blk);
    if (config_.disks[i].transport == VirtioTransport::kPci) {
      PciAddress address;
      HV_TRY(plug_virtio_pci(blk, &address));
      if (config_.disks[i].bootindex)
        boot_candidates_.push_back({*config_.disks[i].bootindex, virtio_blk_boot_path(address)});
    } else {
      HV_TRY(plug_virtio(blk, config_.disks[i].transport));
    }
  }
  std::vector<CdromConfig> ahci_cdroms;
  for (const CdromConfig& cdrom : config_.cdroms) {
    if (cdrom.bus == CdromBus::kAhci) {
      ahci_cdroms.push_back(cdrom);
    } else {
      HV_TRY(add_cdrom(cdrom));
    }
  }
  if (!ahci_cdroms.empty()) HV_TRY(add_ahci_cdroms(ahci_cdroms));
  if (config_.balloon) HV_TRY(add_balloon(*config_.balloon));
  for (const ShareConfig& share : config_.shares) HV_TRY(add_share(share));
  return {};
}

Result<void> Machine::add_cdrom(const CdromConfig& config) {
  auto device = VirtioScsiCdrom::open(config.path);
  if (!device) return std::move(device).error().with_context("--cdrom");
  PciAddress address;
  HV_TRY(plug_virtio_pci(*device, &address));
  HV_LOG_INFO("cdrom {}: virtio-scsi at 00:{:02x}.{}, {} sectors of 2048 bytes", config.path, address.device,
              address.function, (*device)->cdrom().sectors());
  if (config.bootindex) boot_candidates_.push_back({*config.bootindex, virtio_scsi_cdrom_boot_path(address)});
  return ok();
}

Result<void> Machine::add_ahci_cdroms(const std::vector<CdromConfig>& drives) {
  std::vector<std::string> paths;
  for (const CdromConfig& drive : drives) paths.push_back(drive.path);
  auto controller = AhciController::open(memory_, paths);
  if (!controller) return std::move(controller).error().with_context("--cdrom");
  const PciAddress address = HV_TRY(pci_root_->add_device(*controller));
  components_.push_back(device_state_component("pci-ahci", *controller));
  for (unsigned port = 0; port < drives.size(); ++port) {
    HV_LOG_INFO("cdrom {}: AHCI at 00:{:02x}.{} port {}, {} sectors of 2048 bytes", drives[port].path, address.device,
                address.function, port, (*controller)->drive(port).drive().sectors());
    if (drives[port].bootindex)
      boot_candidates_.push_back({*drives[port].bootindex, ahci_cdrom_boot_path(address, port)});
  }
  return ok();
}

Result<void> Machine::add_share(const ShareConfig& config) {
  fs::FuseServerOptions options;
  options.read_only = config.read_only;
  options.cache = config.cache == ShareCache::kAlways  ? fs::CachePolicy::kAlways
                  : config.cache == ShareCache::kNever ? fs::CachePolicy::kNever
                                                       : fs::CachePolicy::kAuto;
  auto server = fs::FuseServer::open(config.host_dir, options);
  if (!server) return std::move(server).error().with_context("--share");
  auto device = std::make_shared<VirtioFs>(std::move(server).value(), VirtioFsOptions{.tag = config.tag});
  HV_TRY(plug_virtio(device, config.transport));
  HV_LOG_INFO("share {}: tag {}{}", config.host_dir, config.tag, config.read_only ? ", read-only" : "");
  return ok();
}

Result<void> Machine::add_balloon(const BalloonConfig& config) {
  balloon_ = std::make_shared<VirtioBalloon>(VirtioBalloonOptions{
      .deflate_on_oom = config.deflate_on_oom,
      .free_page_reporting = config.free_page_reporting,
      .stats_interval = std::chrono::seconds(config.stats_interval_seconds),
  });
  const uint64_t granule = memory_.discard_granularity();
  if (granule > 4096)
    HV_LOG_INFO("virtio-balloon: guest RAM is given back in {} KiB pages: only whole ones go back to the host",
                granule >> 10);
  return plug_virtio(balloon_, config.transport);
}

Result<void> Machine::set_balloon_size(uint64_t bytes) {
  if (!balloon_) return Error(ErrorCode::kUnsupported, "this VM has no balloon: start it with --balloon");
  const uint64_t ram = memory_.total_size();
  if (bytes >= ram)
    return Error(ErrorCode::kInvalidArgument, "a balloon of " + format_size(bytes) + " would take all of the guest's " +
                                                  format_size(ram) + "; give less");
  balloon_->set_target_pages(static_cast<uint32_t>(bytes >> virtio_balloon::kPfnShift));
  return ok();
}

std::optional<BalloonStatus> Machine::balloon_status() const {
  if (!balloon_) return std::nullopt;
  return balloon_->status();
}

std::string Machine::balloon_prompt() const {
  if (!balloon_) return "this VM has no balloon (start it with --balloon)";
  const BalloonStatus status = balloon_->status();
  std::string prompt = "balloon: " + format_size(uint64_t{status.actual_pages} << virtio_balloon::kPfnShift) +
                       " in the balloon, target " +
                       format_size(uint64_t{status.target_pages} << virtio_balloon::kPfnShift);
  if (!status.driver_ready) prompt += " (no driver yet)";
  if (status.stats.has(virtio_balloon::kStatTotalMemory) && status.stats.has(virtio_balloon::kStatFreeMemory))
    prompt += "; the guest has " + format_size(status.stats.value[virtio_balloon::kStatTotalMemory]) + ", " +
              format_size(status.stats.value[virtio_balloon::kStatFreeMemory]) + " free";
  return prompt + ". New size (e.g. 200M, 0 to empty it; Enter keeps it):";
}

std::string Machine::balloon_key(const std::string& answer) {
  if (!balloon_) return "this VM has no balloon (start it with --balloon)";
  if (answer.empty()) return "balloon unchanged";
  auto bytes = parse_size(answer);
  if (!bytes) return "balloon size " + answer + ": " + bytes.error().message();
  if (auto set = set_balloon_size(*bytes); !set) return set.error().message();
  return "balloon target " + format_size(*bytes & ~uint64_t{4095}) + "; the guest adjusts in its own time";
}

Result<void> Machine::add_net(const net::NetOption& option, VirtioTransport transport) {
  const auto [mac, rate] = std::visit(
      [](const auto& mode) -> std::pair<std::optional<net::MacAddress>, std::optional<uint64_t>> {
        if constexpr (std::is_same_v<std::decay_t<decltype(mode)>, net::NoNetOption>) {
          return {};
        } else {
          return {mode.mac, mode.rate};
        }
      },
      option);
  auto backend = HV_TRY(net::open_net_backend(option));
  net::NetBackend* raw_backend = backend.get();
  VirtioNetOptions net_options;
  if (mac) net_options.mac = *mac;
  // The device applies the limit, so it holds for every backend alike.
  net_options.rate_bytes_per_second = rate;
  auto net = std::make_shared<VirtioNet>(std::move(backend), net_options);
  // A backend with work of its own (user-mode NAT: its sockets and timers)
  // runs it on the event loop; the device owns the backend, so the handler
  // holds the device.
  if (raw_backend->service_fd() >= 0) {
    HV_TRY(event_loop_->add(raw_backend->service_fd(), [weak = std::weak_ptr<VirtioNet>(net), raw_backend](uint32_t) {
      if (auto device = weak.lock()) raw_backend->service();
    }));
  }
  HV_TRY(watch_net_backend(net));
  HV_TRY(plug_virtio(net, transport));
  nets_.push_back(net);
  net_kinds_.emplace_back(net::net_mode_name(option));
  return ok();
}

Result<void> Machine::add_vsock(const VsockConfig& config) {
  auto created = VirtioVsock::create({.guest_cid = config.guest_cid, .uds_path = config.uds_path});
  if (!created && created.error().code() == ErrorCode::kBusy && config.own_path_if_busy) {
    const std::string own = vsock::own_socket_path(config.uds_path, ::getpid());
    HV_LOG_WARN("vsock: {} is in use (another VM: the snapshot's original?); listening on {}", config.uds_path, own);
    config_.vsock->uds_path = own;
    created = VirtioVsock::create({.guest_cid = config.guest_cid, .uds_path = own});
  }
  auto vsock = HV_TRY(std::move(created));
  // Host programs' sockets (the listener, each stream) are served on the
  // event loop, through the device's own epoll set.
  HV_TRY(event_loop_->add(vsock->host_fd(), [weak = std::weak_ptr<VirtioVsock>(vsock)](uint32_t) {
    if (auto device = weak.lock()) device->process_host();
  }));
  HV_TRY(plug_virtio(vsock, config.transport));
  HV_LOG_INFO("vsock: guest CID {}, host side at {}", config.guest_cid, config.uds_path);
  vsock_ = std::move(vsock);
  return ok();
}

Result<std::shared_ptr<VirtioPciDevice>> Machine::plug_virtio_pci(std::shared_ptr<VirtioDevice> device,
                                                                  PciAddress* placed) {
  HV_TRY(watch_virtio_reschedule(device));
  auto pci = HV_TRY(VirtioPciDevice::create(device, memory_));
  HV_TRY(fastpath_->add_device(pci));  // before the root maps BAR 0 through it
  const PciAddress address = HV_TRY(pci_root_->add_device(pci));
  if (placed) *placed = address;
  char tag[48];
  std::snprintf(tag, sizeof tag, "pci-%02x:%02x.%x-virtio-", address.bus, address.device, address.function);
  components_.push_back(device_state_component(tag + std::string(device->name()), pci));
  add_virtio_components(tag + std::string(device->name()), device);
  return pci;
}

Result<void> Machine::plug_virtio(std::shared_ptr<VirtioDevice> device, VirtioTransport transport) {
  if (transport == VirtioTransport::kMmio) {
    HV_TRY(watch_virtio_reschedule(device));
    auto mmio = HV_TRY(virtio_mmio_->add(device));
    const std::string tag =
        "mmio-" + std::to_string(virtio_mmio_->descriptions().size() - 1) + "-virtio-" + std::string(device->name());
    components_.push_back(device_state_component(tag, mmio));
    add_virtio_components(tag, device);
  } else {
    HV_TRY(plug_virtio_pci(std::move(device)));
  }
  return ok();
}

void Machine::add_virtio_components(const std::string& tag, const std::shared_ptr<VirtioDevice>& device) {
  // The device's own state, beside its transport's: each has its own version.
  StateComponent component;
  component.tag = tag + "-device";
  component.version = device->state_version();
  component.save = [device](StateWriter& out) -> Result<void> {
    device->save_state(out);
    return ok();
  };
  component.restore = [device, tag = component.tag](std::span<const uint8_t> payload,
                                                    uint32_t version) -> Result<void> {
    // A device reads its older versions itself (restore_state gets the version).
    if (version == 0 || version > device->state_version())
      return Error(ErrorCode::kUnsupported, tag + ": state version " + std::to_string(version) +
                                                " is not one this hostvisor reads (" +
                                                std::to_string(device->state_version()) + ")");
    StateReader in(payload, tag);
    HV_TRY(device->restore_state(in, version));
    return in.finish();
  };
  // Before the transport's record: the transport's restore activates the device.
  components_.insert(components_.end() - 1, std::move(component));
  virtio_devices_.push_back(device);
}

Result<void> Machine::watch_blk_completions(const std::shared_ptr<VirtioBlk>& blk) {
  const int fd = blk->completion_fd();
  if (fd < 0) return ok();  // a disk with no completion source of its own
  return event_loop_->add(fd, [weak = std::weak_ptr<VirtioBlk>(blk)](uint32_t) {
    if (auto device = weak.lock()) device->process_completions();
  });
}

Result<void> Machine::watch_virtio_reschedule(const std::shared_ptr<VirtioDevice>& device) {
  const int fd = device->reschedule_fd();
  if (fd < 0) return ok();  // a device that never asks to run again
  return event_loop_->add(fd, [weak = std::weak_ptr<VirtioDevice>(device)](uint32_t) {
    if (auto d = weak.lock()) d->run_rescheduled();
  });
}

Result<void> Machine::watch_net_backend(const std::shared_ptr<VirtioNet>& net) {
  // The device says when it wants frames (the guest posted receive buffers);
  // otherwise frames wait in the tap and the event loop does not spin.
  auto watching = std::make_shared<std::atomic<bool>>(false);
  auto update = [loop = event_loop_.get(), weak = std::weak_ptr<VirtioNet>(net), watching](bool want) {
    auto device = weak.lock();
    if (!device || watching->exchange(want) == want) return;
    if (want) {
      auto r = loop->add(device->backend_fd(), [weak](uint32_t) {
        if (auto d = weak.lock()) d->process_backend();
      });
      if (!r) HV_LOG_WARN("virtio-net: cannot watch the tap: {}", r.error().message());
    } else {
      loop->remove(device->backend_fd());
    }
  };
  net->set_backend_interest_callback(update);
  update(net->wants_backend_events());
  return {};
}

Result<void> Machine::add_firmware_tables(const arch::MemoryLayout& layout, bool write_tables) {
  rtc_->set_memory_size(layout.low_ram_end, layout.high_ram_size);

  acpi::PlatformDescription platform;
  platform.pm = acpi::PmBlock{.event_port = arch::kPmEventPort,
                              .control_port = arch::kPmControlPort,
                              .reset_port = arch::kPmResetPort,
                              .timer_port = arch::kPmTimerPort,
                              .gpe0_port = arch::kPmGpe0Port,
                              .sci_irq = arch::kPmSciIrq};
  platform.cpu_count = config_.cpus;
  platform.lapic_address = arch::kLapicAddress;
  platform.ioapic_address = arch::kIoApicAddress;
  platform.ecam_base = arch::kPciEcamStart;
  platform.ecam_last_bus = static_cast<uint8_t>(arch::kPciEcamSize / (1 << 20) - 1);
  platform.pci_mmio32_start = static_cast<uint32_t>(arch::kPciMmio32Start);
  platform.pci_mmio32_end = static_cast<uint32_t>(arch::kPciMmio32End - 1);
  for (uint8_t slot = 1; slot < pci::kMaxSlots; ++slot)
    for (uint8_t pin = 1; pin <= 4; ++pin)
      platform.pci_routes.push_back({slot, static_cast<uint8_t>(pin - 1), PciRoot::intx_gsi(slot, pin)});
  platform.virtio_mmio = virtio_mmio_->descriptions();
  platform.vmgenid = {.address = arch::kVmGenerationIdAddress, .gpe = arch::kVmGenerationIdGpe};
  const acpi::AcpiTables tables = HV_TRY(
      acpi::build_acpi_tables(platform, arch::kAcpiTablesStart, arch::kVmGenerationIdAddress - arch::kAcpiTablesStart));
  // A restored guest has them in RAM already (and maybe changed by it).
  if (write_tables) HV_TRY(memory_.write(GuestAddress(tables.base), tables.blob));
  acpi_rsdp_ = tables.rsdp_address;
  if (write_tables) HV_TRY(write_smbios_tables(memory_, config_, layout));
  fw_cfg_ = HV_TRY(add_fw_cfg(pio_bus_, memory_, config_, layout, platform, boot_candidates_));
  components_.push_back(device_state_component("fw-cfg", fw_cfg_));

  auto pm = HV_TRY(add_acpi_pm_block(pio_bus_, vm_->interrupts(), *this));
  pm_ = pm;
  components_.push_back(device_state_component("acpi-pm", pm));
  vm_generation_id_ = std::make_shared<VmGenerationId>(memory_, arch::kVmGenerationIdAddress,
                                                       [pm] { pm->raise_gpe0(arch::kVmGenerationIdGpe); });
  if (write_tables) HV_TRY(vm_generation_id_->generate());
  components_.push_back(device_state_component("vmgenid", vm_generation_id_));
  return ok();
}

Result<void> Machine::add_uefi_flash(UefiFlash flash) {
  // The code bank is guest memory, executed in place; the variable store is
  // the CFI flash device just below it, writing through to the vars file.
  HV_TRY(memory_.write(GuestAddress(flash.code_address()), flash.code));
  const uint64_t vars_address = flash.vars_address();
  auto vars = HV_TRY(CfiFlash::create(std::move(flash.vars), kOvmfFlashBlockSize, std::move(flash.vars_file),
                                      /*read_only=*/false));
  HV_TRY(mmio_bus_.insert(vars, vars_address, vars->size()));
  components_.push_back(device_state_component("uefi-vars-flash", vars));
  return ok();
}

Result<void> Machine::add_firmware_debug_console() {
  DebugConsole::Sink sink;
  if (!config_.firmware_log.empty()) {
    const int fd = ::open(config_.firmware_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return Error(ErrorCode::kIo, "--firmware-log " + config_.firmware_log + ": " + std::strerror(errno));
    auto log = std::make_shared<UniqueFd>(fd);
    sink = [log](std::span<const uint8_t> bytes) { write_all(log->get(), bytes); };
  }
  return pio_bus_.insert(std::make_shared<DebugConsole>(std::move(sink)), arch::kFirmwareDebugPort, 1);
}

Result<void> Machine::setup_console() {
  // The stop signals and SIGWINCH, blocked in every thread since before
  // the machine was built, arrive here (one already pending makes the fd
  // readable at once).
  HV_TRY(event_loop_->add(signals_.fd(), [this](uint32_t) { take_signals(); }));

  std::unique_ptr<ConsoleInput> console_input;
  if (config_.console == ConsoleDevice::kVirtio) {
    console_input = virtio_console_input(virtio_console_);
  } else {
    console_input = HV_TRY(serial_console_input(*serial_));
  }
  // Headless: no terminal at all; input comes only from console attachments.
  const int input_fd = console_options_.headless ? -1 : STDIN_FILENO;
  const int output_fd = console_options_.headless ? -1 : STDOUT_FILENO;
  console_ = HV_TRY(TerminalConsole::attach(
      *event_loop_, std::move(console_input), input_fd, output_fd,
      [this] {
        request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "quit from the console (Ctrl-A x)"});
      },
      [this] { return toggle_pause(); }, [this](bool and_quit) { return snapshot_key(and_quit); },
      TerminalConsole::BalloonKey{[this] { return balloon_prompt(); },
                                  [this](const std::string& answer) { return balloon_key(answer); }},
      terminal_stand_in_.get()));
  return {};
}

std::string Machine::toggle_pause() {
  if (state() == RunState::kPaused) {
    const RunResponse resumed = resume_and_sync();
    return resumed == RunResponse::kDone ? "VM resumed" : std::string("resume: ") + to_string(resumed);
  }
  const RunResponse paused = pause();
  if (paused != RunResponse::kDone && paused != RunResponse::kUnchanged)
    return std::string("pause: ") + to_string(paused);
  // Read while paused: the state a snapshot would save.
  char where[64] = "";
  if (auto regs = vcpu_registers(0))
    std::snprintf(where, sizeof where, ", vCPU 0 at rip %#llx", static_cast<unsigned long long>(regs->rip));
  return std::string("VM paused") + where + "; Ctrl-A p resumes";
}

void Machine::take_signals() {
  const StopSignals::Taken taken = signals_.take();
  if (taken.resized && console_) console_->terminal_resized();
  if (taken.stop_signal != 0)
    request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, StopSignals::describe_stop(taken.stop_signal)});
}

RunOutcome Machine::run() {
  auto console = setup_console();
  if (!console) return RunOutcome{RunOutcome::Kind::kFailure, 1, console.error().message()};
  auto rtc_timer = RtcTimer::start(*event_loop_, rtc_);
  if (!rtc_timer) return RunOutcome{RunOutcome::Kind::kFailure, 1, rtc_timer.error().message()};
  rtc_timer_ = std::move(*rtc_timer);
  RawTerminal raw(console_options_.headless ? -1 : STDIN_FILENO);

  take_signals();  // a stop signal read before this machine existed ends it before it starts
  event_loop_->start();
  runner_->start();
  if (vsock_ || qga_socket_) {
    GuestClockSync::Agents agents;
    if (vsock_) agents.hostvisor = agent::vsock_connector(config_.vsock->uds_path);
    if (qga_socket_) agents.qemu_ga = agent::qga::qga_connector(qga_socket_->path());
    clock_sync_ = std::make_unique<GuestClockSync>(std::move(agents));
    if (!restore_sync_reason_.empty()) clock_sync_->request(restore_sync_reason_, restore_reseed_, clone_macs_);
  }
  if (!vsock_ && !clone_macs_.empty()) {
    HV_LOG_WARN(
        "--clone: without --vsock no guest agent moves the guest's interfaces to their NICs' new MACs; "
        "it sends from the snapshot's");
  }
  runner_->wait();
  clock_sync_.reset();  // while the loop still serves the vsock socket it may be using
  event_loop_->stop();
  rtc_timer_.reset();
  event_loop_->remove(signals_.fd());
  // A stop signal that came while the vCPUs and the loop wound down (say,
  // just after the guest reset) turns a reset into a quit: the outcome is
  // read only now, when nothing can change it any more.
  take_signals();
  console_.reset();
  log_net_counters();
  return *runner_->outcome();
}

void Machine::log_net_counters() {
  // One line per NIC: the device's counts (what the guest sent and was
  // handed, the rate limit's waits) and, for a backend that keeps its own,
  // the backend's (which also count what it dropped before the device saw it).
  for (size_t i = 0; i < nets_.size(); ++i) {
    net::NetBackend& backend = nets_[i]->backend();
    const std::string device = VirtioNet::format_stats(nets_[i]->stats());
    if (auto counters = backend.counters())
      HV_LOG_INFO("net{} ({}): device {}; backend {}", i, backend.name(), device, net::format_net_counters(*counters));
    else
      HV_LOG_INFO("net{} ({}): device {}", i, backend.name(), device);
  }
}

void Machine::console_write(std::span<const uint8_t> bytes) {
  // The stand-in owes its answer before the output is seen: whoever reads
  // a prompt and types then types after the answer (TerminalConsole hands
  // answers over before new input).
  if (terminal_stand_in_) terminal_stand_in_->observe(bytes);
  if (console_options_.output)
    console_options_.output->write(bytes);
  else
    write_all(STDOUT_FILENO, bytes);
}

void Machine::console_input(std::span<const uint8_t> bytes) {
  if (console_) console_->feed_remote(bytes);
}

void Machine::press_power_button() { pm_->press_power_button(); }

namespace {
Result<net::SlirpBackend*> nat_backend(const std::vector<std::shared_ptr<VirtioNet>>& nets, unsigned nic) {
  if (nic >= nets.size())
    return Error(ErrorCode::kInvalidArgument,
                 "there is no NIC " + std::to_string(nic) + " (this VM has " + std::to_string(nets.size()) + ")");
  auto* slirp = dynamic_cast<net::SlirpBackend*>(&nets[nic]->backend());
  if (!slirp)
    return Error(ErrorCode::kUnsupported, "NIC " + std::to_string(nic) + " is " +
                                              std::string(nets[nic]->backend().name()) +
                                              ", not a user-mode NAT (--net user): it has no host forwards");
  return slirp;
}

uint64_t resident_bytes() {
  auto statm = read_file("/proc/self/statm");
  if (!statm) return 0;
  unsigned long long size = 0, resident = 0;
  if (std::sscanf(statm->c_str(), "%llu %llu", &size, &resident) != 2) return 0;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}
}  // namespace

Result<void> Machine::add_host_forward(unsigned nic, const net::HostForward& forward) {
  net::SlirpBackend* slirp = HV_TRY(nat_backend(nets_, nic));
  return slirp->add_forward(forward);
}

Result<void> Machine::remove_host_forward(unsigned nic, const net::HostForward& forward) {
  net::SlirpBackend* slirp = HV_TRY(nat_backend(nets_, nic));
  if (!slirp->remove_forward(forward))
    return Error(ErrorCode::kNotFound, "NIC " + std::to_string(nic) + " has no " +
                                           (forward.protocol == net::ForwardProtocol::kUdp ? "udp" : "tcp") +
                                           " forward from " + net::format_ipv4_address(forward.host_address) + ":" +
                                           std::to_string(forward.host_port));
  return ok();
}

std::vector<NicInfo> Machine::nics() const {
  std::vector<NicInfo> nics;
  for (size_t i = 0; i < nets_.size(); ++i) nics.push_back({net_kinds_[i], net::format_mac_address(nets_[i]->mac())});
  return nics;
}

std::vector<DiskInfo> Machine::disks() const {
  std::vector<DiskInfo> disks;
  for (size_t i = 0; i < blks_.size(); ++i)
    disks.push_back({config_.disks[i].disk.path, blks_[i]->disk().format_name(), blks_[i]->read_only()});
  return disks;
}

MachineMetrics Machine::metrics() const {
  MachineMetrics metrics;
  metrics.vcpus = runner_->exit_counts();
  for (const auto& blk : blks_) {
    const VirtioBlk::IoCounts io = blk->io_counts();
    metrics.disks.push_back({io.read_ops, io.write_ops, io.read_bytes, io.write_bytes, io.flush_ops});
  }
  for (const auto& net : nets_) {
    const VirtioNet::Stats stats = net->stats();
    metrics.nics.push_back(
        {stats.rx_packets, stats.tx_packets, stats.rx_bytes, stats.tx_bytes, stats.rx_dropped, stats.tx_dropped});
  }
  metrics.guest_bytes = memory_.total_size();
  metrics.host_rss_bytes = resident_bytes();
  metrics.balloon = balloon_status();
  return metrics;
}

RunResponse Machine::pause() { return runner_->pause(); }

RunResponse Machine::resume() { return runner_->resume(); }

RunResponse Machine::resume_and_sync() {
  const RunResponse resumed = resume();
  if (resumed == RunResponse::kDone && clock_sync_) clock_sync_->request("a pause");
  return resumed;
}

void Machine::request_stop(RunOutcome outcome) {
  if (runner_) runner_->stop(std::move(outcome));
}

void Machine::request_exit(int status) { request_stop(RunOutcome{RunOutcome::Kind::kDebugExit, status, ""}); }

void Machine::request_reset() { request_stop(RunOutcome::reset()); }

void Machine::request_poweroff() { request_stop(RunOutcome::power_off()); }

// ---------------------------------------------------------------- snapshots

void Machine::add_cpu_components() {
  // vCPUs are created after the devices; the components read vcpus_ when
  // they run. The interrupt controllers first: a vCPU's restore may look at
  // its local APIC's VM-wide clock.
  StateComponent irqchip;
  irqchip.tag = "irqchip";
  irqchip.version = kIrqchipStateVersion;
  irqchip.save = [this](StateWriter& out) -> Result<void> {
    encode_irqchip_state(out, HV_TRY(vm_->save_irqchip()));
    return ok();
  };
  irqchip.restore = [this](std::span<const uint8_t> payload, uint32_t version) -> Result<void> {
    return vm_->restore_irqchip(HV_TRY(decode_irqchip_state(payload, version)));
  };
  components_.push_back(std::move(irqchip));
  for (unsigned i = 0; i < config_.cpus; ++i) {
    StateComponent vcpu;
    vcpu.tag = "vcpu-" + std::to_string(i);
    vcpu.version = kVcpuStateVersion;
    vcpu.save = [this, i](StateWriter& out) -> Result<void> {
      // Only from a paused vCPU: the runner refuses otherwise.
      encode_vcpu_state(out, HV_TRY(runner_->read_paused(i, [](Vcpu& v) { return v.save_state(); })));
      return ok();
    };
    vcpu.restore = [this, i](std::span<const uint8_t> payload, uint32_t version) -> Result<void> {
      return vcpus_[i]->restore_state(HV_TRY(decode_vcpu_state(payload, version)));
    };
    components_.push_back(std::move(vcpu));
  }
}

Result<GuestMemory> Machine::restore_memory(const arch::MemoryLayout& layout, const snapshot::Snapshot& snapshot,
                                            RestoreMode mode) {
  // The snapshot's regions must be the ones this configuration lays out.
  const auto& saved = snapshot.header().regions;
  if (snapshot::region_specs(saved).size() != layout.regions().size())
    return Error(ErrorCode::kCorrupt, "the snapshot's RAM regions do not match its memory size");
  if (mode == RestoreMode::kMap) {
    if (auto conflict = mapped_restore_conflict(config_.memory_backing)) {
      HV_LOG_WARN("--restore-mode map: {}, so guest RAM is copied from the snapshot instead (--restore-mode copy)",
                  *conflict);
      mode = RestoreMode::kCopy;
    }
  }
  restored_with_ = mode;
  GuestMemory memory;
  if (mode == RestoreMode::kMap) {
    const int fd = ::dup(snapshot.memory_fd());
    if (fd < 0) return Error::from_errno("duplicating the memory file's descriptor");
    memory = HV_TRY(GuestMemory::map_private(layout.regions(), UniqueFd(fd), config_.memory_backing));
  } else {
    memory = HV_TRY(GuestMemory::create(layout.regions(), config_.memory_backing));
  }
  if (snapshot::describe_regions(memory) != saved)
    return Error(ErrorCode::kCorrupt, "the snapshot's RAM regions do not match its memory size");
  if (mode == RestoreMode::kCopy) {
    // The copy reads every byte of data anyway: its checksums cost no extra pass.
    const auto& header = snapshot.header();
    if (header.memory_crcs.empty()) {
      HV_TRY(snapshot::read_memory_image(snapshot.memory_fd(), memory));
    } else {
      snapshot::MemoryChecksummer sums(header.memory_file_size, header.memory_chunk_size);
      HV_TRY(snapshot::read_memory_image(snapshot.memory_fd(), memory, &sums));
      if (auto checked = snapshot::check_memory_checksums(header, sums.finish()); !checked)
        return std::move(checked).error().with_context("snapshot " + snapshot.dir());
    }
  }
  return memory;
}

Result<void> Machine::restore_components(const snapshot::Snapshot& snapshot) {
  std::vector<std::string> tags;
  for (const StateComponent& component : components_) tags.push_back(component.tag);
  if (tags != snapshot.header().devices) {
    std::string saved, here;
    for (const auto& tag : snapshot.header().devices) saved += (saved.empty() ? "" : " ") + tag;
    for (const auto& tag : tags) here += (here.empty() ? "" : " ") + tag;
    return Error(ErrorCode::kCorrupt, "the snapshot's devices (" + saved + ") are not this machine's (" + here + ")");
  }
  if (snapshot.records().size() != components_.size())
    return Error(ErrorCode::kCorrupt, "the snapshot holds " + std::to_string(snapshot.records().size()) +
                                          " state records for " + std::to_string(components_.size()) + " components");
  for (const StateComponent& component : components_) {
    const snapshot::StateRecord* record = HV_TRY(snapshot.record(component.tag));
    auto restored = component.restore(record->payload, record->version);
    if (!restored) return std::move(restored).error().with_context(component.tag);
  }
  // BARs where the restored config space puts them, then each device looks
  // at its rings: chains made available before the snapshot (or given back
  // when it was taken) are served now.
  pci_root_->refresh_mappings();
  for (const auto& device : virtio_devices_)
    for (uint16_t q = 0; q < device->queue_count(); ++q) (void)device->process_queue(q);
  return ok();
}

Result<SnapshotSummary> Machine::save_snapshot(const std::string& dir) {
  // The guest kernel holds node IDs and open files that name descriptors of
  // this process: a restored guest's would name nothing.
  if (!config_.shares.empty())
    return Error(ErrorCode::kUnsupported,
                 "this VM has a shared folder (--share " + config_.shares.front().tag +
                     "): a VM with shared folders cannot be snapshotted (the guest's open files there are this process's)");
  // The snapshot's machine description has no CD-ROM drives yet.
  if (!config_.cdroms.empty())
    return Error(ErrorCode::kUnsupported, "snapshots of a machine with a --cdrom drive are not supported yet");
  // The ROM region and the firmware's own state (its shadowed copy, what it
  // programmed) are not in the snapshot format yet.
  if (has_firmware())
    return Error(ErrorCode::kUnsupported, std::string("snapshots of a machine booted through firmware (--firmware ") +
                                              to_string(config_.firmware) + ") are not supported yet");
  const auto start = std::chrono::steady_clock::now();
  const bool was_running = state() == RunState::kRunning;
  const RunResponse paused = pause();
  if (paused != RunResponse::kDone && paused != RunResponse::kUnchanged)
    return Error(ErrorCode::kBusy, std::string("cannot pause the VM for a snapshot: ") + to_string(paused));
  std::vector<DiskToFreeze> freezes;
  auto saved = [&]() -> Result<SnapshotSummary> {
    for (const auto& device : virtio_devices_) HV_TRY(device->quiesce());
    // Each writable disk is frozen into the snapshot as it is now.
    const auto stamp =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    for (uint32_t i = 0; i < blks_.size(); ++i) {
      if (blks_[i]->read_only()) continue;
      block::BlockDevice& disk = blks_[i]->disk();
      auto flushed = disk.flush();
      if (!flushed) return std::move(flushed).error().with_context("flushing disk " + config_.disks[i].disk.path);
      const std::string format = disk.format_name();
      freezes.push_back({i, std::filesystem::absolute(config_.disks[i].disk.path).lexically_normal().string(), format,
                         disk.virtual_size(), "disk" + std::to_string(i) + "-" + std::to_string(stamp) + "." + format});
    }
    snapshot::SnapshotContents contents;
    contents.header.machine_config = encode_machine_config(config_, hypervisor_->name());
    for (const StateComponent& component : components_) {
      StateWriter out;
      auto r = component.save(out);
      if (!r) return std::move(r).error().with_context("saving " + component.tag);
      contents.header.devices.push_back(component.tag);
      contents.records.push_back({component.tag, component.version, out.take()});
    }
    // Freezing makes each live image's inode read-only; a save that fails
    // gives the modes back, so the VM goes on writing where it was.
    std::vector<LiveImageMode> live_modes;
    for (const DiskToFreeze& disk : freezes) live_modes.push_back(HV_TRY(live_image_mode(disk.live_path)));
    contents.add_files = [&](const std::string& temp_dir, const std::string& final_dir,
                             snapshot::SnapshotHeader& header) -> Result<void> {
      HV_TRY(carry_over_frozen_images(final_dir, temp_dir));
      for (const DiskToFreeze& disk : freezes) header.disks.push_back(HV_TRY(freeze_disk_into(disk, temp_dir)));
      return ok();
    };
    // Every overlay is created and opened while the snapshot can still be
    // withdrawn: a failure here leaves the VM on its own images, none
    // switched, and the previous snapshot in place.
    std::vector<std::string> prepared;
    std::vector<std::shared_ptr<block::BlockDevice>> overlays;
    auto drop_prepared = [&] {
      overlays.clear();
      std::error_code ignored;
      for (const std::string& path : prepared) std::filesystem::remove(path, ignored);
      prepared.clear();
    };
    contents.on_published = [&](const std::string& final_dir) -> Result<void> {
      auto opened = [&]() -> Result<void> {
        for (const DiskToFreeze& disk : freezes) {
          prepared.push_back(HV_TRY(
              prepare_overlay(disk.live_path, final_dir + "/" + disk.frozen_name, disk.format, disk.virtual_size)));
          block::DiskOption option = config_.disks[disk.index].disk;
          option.format = block::ImageFormat::kQcow2;
          auto image = block::open_image(prepared.back(), option.open_options());
          if (!image) return std::move(image).error().with_context("the overlay for " + disk.live_path);
          overlays.push_back(std::shared_ptr<block::BlockDevice>(std::move(image).value()));
        }
        return ok();
      }();
      if (!opened) drop_prepared();
      return opened;
    };
    auto written = snapshot::write_snapshot(dir, std::move(contents), memory_);
    if (!written) {
      drop_prepared();
      for (const LiveImageMode& live : live_modes) give_back_mode(live);
      return std::move(written).error();
    }
    const snapshot::SnapshotWriteStats stats = *written;
    // The guest goes on in the overlays. Its writes must never reach a
    // frozen image: if a rename fails now (some disks moved, some not), the
    // run ends.
    auto moved = [&]() -> Result<void> {
      for (size_t i = 0; i < freezes.size(); ++i) {
        const DiskToFreeze& disk = freezes[i];
        HV_TRY(install_overlay(prepared[i], disk.live_path));
        const auto& blk = blks_[disk.index];
        if (blk->completion_fd() >= 0) event_loop_->remove(blk->completion_fd());
        HV_TRY(blk->replace_disk(overlays[i]));
        HV_TRY(watch_blk_completions(blk));
        config_.disks[disk.index].disk.format = block::ImageFormat::kQcow2;
      }
      return ok();
    }();
    if (!moved) {
      request_stop(RunOutcome{RunOutcome::Kind::kFailure, 1,
                              "after the snapshot, the disks could not move to overlays: " + moved.error().message()});
      return std::move(moved).error();
    }
    SnapshotSummary summary;
    summary.memory_data_bytes = stats.memory_data_bytes;
    summary.state_bytes = stats.state_bytes;
    return summary;
  }();
  if (was_running) resume();
  if (saved) saved->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return saved;
}

std::string Machine::snapshot_key(bool and_quit) {
  if (snapshot_dir_.empty()) return "no snapshot directory: start hostvisor run with --snapshot-dir DIR";
  auto saved = save_snapshot(snapshot_dir_);
  if (!saved) return "snapshot failed: " + saved.error().message();
  char line[160];
  std::snprintf(line, sizeof line, "snapshot written to %s in %.0f ms (%.1f MiB of RAM)%s", snapshot_dir_.c_str(),
                saved->seconds * 1000, saved->memory_data_bytes / 1048576.0, and_quit ? "; quitting" : "");
  if (and_quit) request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "quit after a snapshot (Ctrl-A S)"});
  return line;
}

}  // namespace hostvisor
