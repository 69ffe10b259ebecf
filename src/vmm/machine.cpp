#include "vmm/machine.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "arch/x86_64/acpi/acpi_tables.h"
#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "base/log.h"
#include "base/size.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/serial_8250.h"
#include "devices/pci/pci_config_io.h"
#include "devices/pci/pci_ecam.h"
#include "devices/virtio/blk/virtio_blk.h"
#include "devices/virtio/console/virtio_console.h"
#include "devices/virtio/net/virtio_net.h"
#include "devices/virtio/pci/virtio_pci_device.h"
#include "devices/virtio/rng/virtio_rng.h"
#include "net/net_backend_factory.h"
#include "vmm/console.h"
#include "vmm/firmware_config.h"
#include "vmm/legacy_devices.h"

namespace hostvisor {

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& config, StopSignals& signals) {
  std::unique_ptr<Machine> machine(new Machine(config, signals));
  HV_TRY(machine->build());
  return machine;
}

Machine::~Machine() {
  runner_.reset();  // stops and joins the vCPU threads
  if (event_loop_) event_loop_->stop();
}

Result<void> Machine::build() {
  event_loop_ = HV_TRY(EventLoop::create());
  if (config_.cpus == 0 || config_.cpus > kMaxVcpus)
    return Error(ErrorCode::kInvalidArgument,
                 "--cpus " + std::to_string(config_.cpus) + ": must be between 1 and " + std::to_string(kMaxVcpus));

  AccelChoice choice = HV_TRY(choose_accel(config_.accel, probe_host_virtualization()));
  accel_reason_ = choice.reason;
  hypervisor_ = HV_TRY(create_hypervisor(choice.accel));

  const arch::MemoryLayout layout = HV_TRY(arch::memory_layout(config_.memory_bytes));
  memory_ = HV_TRY(GuestMemory::create(layout.regions()));

  vm_ = HV_TRY(hypervisor_->create_vm(VmConfig{config_.cpus}));
  HV_TRY(vm_->map_memory(memory_));
  memory_.set_dma_write_observer(
      [vm = vm_.get()](GuestAddress at, uint64_t length) { vm->dma_written(at.value(), length); });

  LegacyDevices legacy =
      HV_TRY(add_legacy_devices(pio_bus_, vm_->interrupts(), *this, LegacyOptions{.debug_exit = config_.debug_exit}));
  serial_ = std::move(legacy.serial);
  rtc_ = std::move(legacy.rtc);
  virtio_mmio_ = std::make_unique<VirtioMmioSlots>(mmio_bus_, *vm_, *event_loop_, memory_);
  HV_LOG_INFO("virtio-mmio: notifies {}", virtio_mmio_->notify_fast_path() ? "through ioeventfds on the event loop"
                                                                           : "as exits on the vCPU threads");
  HV_TRY(add_pci_devices());

  HV_TRY(add_firmware_tables(layout));

  const std::string kernel = HV_TRY(read_file(config_.kernel_path));
  std::string initrd;
  if (!config_.initrd_path.empty()) initrd = HV_TRY(read_file(config_.initrd_path));
  arch::KernelImage image;
  image.kernel = std::span(reinterpret_cast<const uint8_t*>(kernel.data()), kernel.size());
  image.initrd = std::span(reinterpret_cast<const uint8_t*>(initrd.data()), initrd.size());
  image.cmdline = config_.cmdline;
  image.acpi_rsdp = acpi_rsdp_;
  auto boot = arch::load_kernel(memory_, layout, image);
  if (!boot) return std::move(boot).error().with_context(config_.kernel_path);
  HV_LOG_INFO("{}: {}", config_.kernel_path, boot->description);

  for (unsigned i = 0; i < config_.cpus; ++i) vcpus_.push_back(HV_TRY(vm_->create_vcpu(i)));
  Vcpu& bsp = *vcpus_[0];
  HV_TRY(bsp.set_system_registers(boot->sregs));
  HV_TRY(bsp.set_registers(boot->regs));

  std::vector<Vcpu*> vcpus;
  for (auto& vcpu : vcpus_) vcpus.push_back(vcpu.get());
  runner_ = std::make_unique<VcpuRunner>(std::move(vcpus), pio_bus_, mmio_bus_);
  return {};
}

Result<void> Machine::add_pci_devices() {
  bar_mapper_ = std::make_unique<BusBarMapper>(mmio_bus_, pio_bus_);
  fastpath_ = std::make_unique<VirtioPciFastPath>(*bar_mapper_, *vm_, *event_loop_);
  HV_LOG_INFO("virtio-pci: notifies {}, MSI-X {}",
              fastpath_->notify_fast_path() ? "through ioeventfds on the event loop" : "as exits on the vCPU threads",
              fastpath_->msi_fast_path() ? "through irqfds" : "through the interrupt controller");
  pci_root_ = std::make_unique<PciRoot>(&vm_->interrupts(), fastpath_.get());
  HV_TRY(pio_bus_.insert(std::make_shared<PciConfigIo>(*pci_root_, this), pci::kConfigIoBase, pci::kConfigIoSize));
  HV_TRY(mmio_bus_.insert(std::make_shared<PciEcam>(*pci_root_), pci::kEcamBase, pci::kEcamSize));

  // Every machine has an entropy source: guests otherwise wait for
  // randomness at boot (Linux's crng init), and it costs nothing idle.
  HV_TRY(plug_virtio_pci(std::make_shared<VirtioRng>()));

  // virtio-console: hvc0, the console of guests booted with console=hvc0;
  // its output shares the terminal with the serial port, and with
  // --console virtio it gets the terminal's input.
  virtio_console_ =
      HV_TRY(VirtioConsole::create([](std::span<const uint8_t> bytes) { write_all(STDOUT_FILENO, bytes); }));
  HV_TRY(plug_virtio_pci(virtio_console_));

  for (const auto& [option, transport] : config_.nets) {
    if (std::holds_alternative<net::NoNetOption>(option)) continue;
    HV_TRY(add_net(option, transport));
  }

  for (size_t i = 0; i < config_.disks.size(); ++i) {
    // The serial is what the guest sees in /sys/block/vdX/serial.
    // Asynchronous I/O: a vCPU (or the event loop) only submits; the event
    // loop answers when the block layer completes the request.
    auto blk = HV_TRY(VirtioBlk::open(config_.disks[i].disk, "hostvisor-disk" + std::to_string(i)));
    HV_TRY(watch_blk_completions(blk));
    HV_TRY(plug_virtio(blk, config_.disks[i].transport));
  }
  return {};
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
  return ok();
}

Result<std::shared_ptr<VirtioPciDevice>> Machine::plug_virtio_pci(std::shared_ptr<VirtioDevice> device) {
  HV_TRY(watch_virtio_reschedule(device));
  auto pci = HV_TRY(VirtioPciDevice::create(std::move(device), memory_));
  HV_TRY(fastpath_->add_device(pci));  // before the root maps BAR 0 through it
  HV_TRY(pci_root_->add_device(pci));
  return pci;
}

Result<void> Machine::plug_virtio(std::shared_ptr<VirtioDevice> device, VirtioTransport transport) {
  if (transport == VirtioTransport::kMmio) {
    HV_TRY(watch_virtio_reschedule(device));
    HV_TRY(virtio_mmio_->add(std::move(device)));
  } else {
    HV_TRY(plug_virtio_pci(std::move(device)));
  }
  return ok();
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

Result<void> Machine::add_firmware_tables(const arch::MemoryLayout& layout) {
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
  const acpi::AcpiTables tables =
      HV_TRY(acpi::build_acpi_tables(platform, arch::kAcpiTablesStart, arch::kAcpiTablesEnd - arch::kAcpiTablesStart));
  HV_TRY(memory_.write(GuestAddress(tables.base), tables.blob));
  acpi_rsdp_ = tables.rsdp_address;
  HV_TRY(write_smbios_tables(memory_, config_, layout));
  fw_cfg_ = HV_TRY(add_fw_cfg(pio_bus_, memory_, config_, layout, platform));

  return add_acpi_pm_block(pio_bus_, vm_->interrupts(), *this);
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
  console_ = HV_TRY(TerminalConsole::attach(
      *event_loop_, std::move(console_input), STDIN_FILENO, STDOUT_FILENO,
      [this] {
        request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "quit from the console (Ctrl-A x)"});
      },
      [this] { return toggle_pause(); }));
  return {};
}

std::string Machine::toggle_pause() {
  if (state() == RunState::kPaused) {
    const RunResponse resumed = resume();
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
  RawTerminal raw(STDIN_FILENO);

  take_signals();  // a stop signal read before this machine existed ends it before it starts
  event_loop_->start();
  runner_->start();
  runner_->wait();
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

RunResponse Machine::pause() { return runner_->pause(); }

RunResponse Machine::resume() { return runner_->resume(); }

void Machine::request_stop(RunOutcome outcome) {
  if (runner_) runner_->stop(std::move(outcome));
}

void Machine::request_exit(int status) { request_stop(RunOutcome{RunOutcome::Kind::kDebugExit, status, ""}); }

void Machine::request_reset() { request_stop(RunOutcome::reset()); }

void Machine::request_poweroff() { request_stop(RunOutcome::power_off()); }

}  // namespace hostvisor
