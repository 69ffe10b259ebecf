#include "vmm/machine.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>

#include "arch/x86_64/acpi/acpi_tables.h"
#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "base/log.h"
#include "base/size.h"
#include "devices/acpi/pm_block.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/port_61.h"
#include "devices/legacy/post_code.h"
#include "devices/legacy/serial_8250.h"
#include "devices/pci/pci_config_io.h"
#include "devices/pci/pci_ecam.h"
#include "devices/virtio/blk/virtio_blk.h"
#include "devices/virtio/console/virtio_console.h"
#include "devices/virtio/net/virtio_net.h"
#include "devices/virtio/pci/virtio_pci_device.h"
#include "devices/virtio/rng/virtio_rng.h"
#include "net/tap/tap_backend.h"
#include "vmm/console.h"

namespace hostvisor {

namespace {

// PC ISA interrupt lines of the legacy devices.
constexpr uint32_t kCom1Irq = 4;
constexpr uint32_t kRtcIrq = 8;
constexpr uint16_t kCom1Base = 0x3f8;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace

Result<std::unique_ptr<Machine>> Machine::create(const MachineConfig& config, StopSignals& signals) {
  std::unique_ptr<Machine> machine(new Machine(config, signals));
  HV_TRY(machine->build());
  return machine;
}

Machine::~Machine() {
  request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, ""});
  for (auto& t : threads_)
    if (t.joinable()) t.join();
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

  HV_TRY(add_legacy_devices());
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
  return {};
}

Result<void> Machine::add_legacy_devices() {
  InterruptController& irq = vm_->interrupts();
  serial_ = std::make_shared<Serial8250>([](std::span<const uint8_t> bytes) { write_all(STDOUT_FILENO, bytes); },
                                         IrqLine(&irq, kCom1Irq));
  HV_TRY(pio_bus_.insert(serial_, kCom1Base, 8));

  auto rtc = std::make_shared<CmosRtc>(IrqLine(&irq, kRtcIrq));
  HV_TRY(pio_bus_.insert(rtc, 0x70, 2));
  rtc_ = rtc;
  auto i8042 = std::make_shared<I8042>(this, IrqLine(&irq, 1), IrqLine(&irq, 12));
  HV_TRY(pio_bus_.insert(i8042, 0x60, 1));
  HV_TRY(pio_bus_.insert(i8042->command_port(), 0x64, 1));
  // Port 0x61 reaches us only where the backend has no PIT of its own.
  HV_TRY(pio_bus_.insert(std::make_shared<SystemControlPortB>(), SystemControlPortB::kPort, 1));
  HV_TRY(pio_bus_.insert(std::make_shared<PostCode>(), 0x80, 1));
  if (config_.debug_exit) HV_TRY(pio_bus_.insert(std::make_shared<DebugExit>(this), 0xf4, 4));
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
    const auto* tap = std::get_if<net::TapNetOption>(&option);
    if (!tap)
      return Error(ErrorCode::kUnsupported,
                   "--net " + std::string(net::net_mode_name(option)) + ": not wired into the machine yet");
    auto backend = net::TapBackend::open(tap->ifname);
    if (!backend) return std::move(backend).error().with_context("--net tap " + tap->ifname);
    VirtioNetOptions net_options;
    if (tap->mac) net_options.mac = *tap->mac;
    auto net = std::make_shared<VirtioNet>(std::move(backend).value(), net_options);
    HV_TRY(watch_net_backend(net));
    HV_TRY(plug_virtio(net, transport));
  }

  for (size_t i = 0; i < config_.disks.size(); ++i) {
    // The serial is what the guest sees in /sys/block/vdX/serial.
    // Asynchronous I/O: a vCPU (or the event loop) only submits; the event
    // loop answers when the block layer completes the request.
    auto blk = HV_TRY(VirtioBlk::open(config_.disks[i].disk, "hostvisor-disk" + std::to_string(i), /*async_io=*/true));
    HV_TRY(watch_blk_completions(blk));
    HV_TRY(plug_virtio(blk, config_.disks[i].transport));
  }
  return {};
}

Result<std::shared_ptr<VirtioPciDevice>> Machine::plug_virtio_pci(std::shared_ptr<VirtioDevice> device) {
  auto pci = HV_TRY(VirtioPciDevice::create(std::move(device), memory_));
  HV_TRY(fastpath_->add_device(pci));  // before the root maps BAR 0 through it
  HV_TRY(pci_root_->add_device(pci));
  return pci;
}

Result<void> Machine::plug_virtio(std::shared_ptr<VirtioDevice> device, VirtioTransport transport) {
  if (transport == VirtioTransport::kMmio) {
    HV_TRY(virtio_mmio_->add(std::move(device)));
  } else {
    HV_TRY(plug_virtio_pci(std::move(device)));
  }
  return ok();
}

Result<void> Machine::watch_blk_completions(const std::shared_ptr<VirtioBlk>& blk) {
  const int fd = blk->completion_fd();
  if (fd < 0) return ok();  // synchronous device: nothing to watch
  return event_loop_->add(fd, [weak = std::weak_ptr<VirtioBlk>(blk)](uint32_t) {
    if (auto device = weak.lock()) device->process_completions();
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

  const acpi::PmBlock& pm = platform.pm;
  HV_TRY(pio_bus_.insert(std::make_shared<AcpiPmBlock>(this, IrqLine(&vm_->interrupts(), pm.sci_irq),
                                                       acpi::PmBlock::kResetValue, acpi::PmBlock::kS5SleepType),
                         pm.event_port, AcpiPmBlock::kSize));
  return {};
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
  console_ =
      HV_TRY(TerminalConsole::attach(*event_loop_, std::move(console_input), STDIN_FILENO, STDOUT_FILENO, [this] {
        request_stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "quit from the console (Ctrl-A x)"});
      }));

  // The CMOS RTC computes its interrupts lazily; a timer polls it when its
  // next event is due, and at least once a second so a newly enabled
  // periodic or alarm interrupt starts within a second.
  int tfd = ::timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  if (tfd < 0) return Error::from_errno("timerfd_create");
  rtc_timer_.reset(tfd);
  auto arm_rtc_timer = [this] {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const int64_t now_ns = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
    int64_t due = now_ns + 1000000000;
    if (auto next = rtc_->next_event_ns(); next && *next < due) due = std::max(*next, now_ns + 1);
    itimerspec spec{};
    spec.it_value.tv_sec = due / 1000000000;
    spec.it_value.tv_nsec = due % 1000000000;
    ::timerfd_settime(rtc_timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
  };
  HV_TRY(event_loop_->add(tfd, [this, arm_rtc_timer](uint32_t) {
    uint64_t expirations;
    [[maybe_unused]] ssize_t n = ::read(rtc_timer_.get(), &expirations, sizeof expirations);
    rtc_->poll();
    arm_rtc_timer();
  }));
  arm_rtc_timer();
  return {};
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
  RawTerminal raw(STDIN_FILENO);

  state_ = State::kRunning;
  take_signals();  // a stop signal read before this machine existed ends it before it starts
  event_loop_->start();
  for (unsigned i = 0; i < vcpus_.size(); ++i) threads_.emplace_back([this, i] { vcpu_thread(i); });

  {
    std::unique_lock lock(mutex_);
    state_changed_.wait(lock, [this] { return outcome_.has_value(); });
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  event_loop_->stop();
  event_loop_->remove(signals_.fd());
  // A stop signal that came while the vCPUs and the loop wound down (say,
  // just after the guest reset) turns a reset into a quit: the outcome is
  // read only now, when nothing can change it any more.
  take_signals();
  console_.reset();
  std::lock_guard lock(mutex_);
  return *outcome_;
}

void Machine::vcpu_thread(unsigned index) {
  Vcpu& vcpu = *vcpus_[index];
  while (state_ != State::kStopped) {
    park_if_paused(index);
    if (state_ == State::kStopped) break;
    auto exit = vcpu.run();
    if (!exit) {
      request_stop(
          RunOutcome{RunOutcome::Kind::kFailure, 1, "vCPU " + std::to_string(index) + ": " + exit.error().message()});
      break;
    }
    if (!handle_exit(index, *exit)) break;
  }
}

bool Machine::handle_exit(unsigned index, VcpuExit& exit) {
  return std::visit(
      Overloaded{
          [&](PortIoExit& io) {
            for (uint32_t i = 0; i < io.count; ++i) {
              auto data = io.data.subspan(static_cast<size_t>(i) * io.size, io.size);
              bool claimed = io.is_write ? pio_bus_.write(io.port, data) : pio_bus_.read(io.port, data);
              if (!claimed) HV_LOG_DEBUG("unclaimed port {} {:#x}", io.is_write ? "write" : "read", io.port);
            }
            return true;
          },
          [&](MmioExit& mmio) {
            bool claimed =
                mmio.is_write ? mmio_bus_.write(mmio.address, mmio.data) : mmio_bus_.read(mmio.address, mmio.data);
            if (!claimed) HV_LOG_DEBUG("unclaimed MMIO {} {:#x}", mmio.is_write ? "write" : "read", mmio.address);
            return true;
          },
          [&](HaltExit&) {
            // A vCPU halted with interrupts off is parked for good: Linux does
            // that to the other CPUs before it powers off. Only when every
            // vCPU is parked can the guest never go on.
            std::unique_lock lock(mutex_);
            if (++halted_vcpus_ == vcpus_.size()) {
              lock.unlock();
              request_stop(RunOutcome{RunOutcome::Kind::kGuestStuck, 4,
                                      "every vCPU halted with interrupts disabled: the guest can never continue"});
              return false;
            }
            state_changed_.wait(lock, [this] { return state_ == State::kStopped; });
            return false;
          },
          [&](SystemEventExit& event) {
            switch (event.kind) {
              case SystemEventExit::Kind::kPowerOff: request_poweroff(); break;
              case SystemEventExit::Kind::kReset: request_reset(); break;
              case SystemEventExit::Kind::kTripleFault:
                request_stop(
                    RunOutcome{RunOutcome::Kind::kTripleFault, 4,
                               "the guest triple-faulted on vCPU " + std::to_string(index) + " (CPU shutdown)"});
                break;
            }
            return false;
          },
          [&](InterruptedExit&) { return true; },
          [&](FailureExit& failure) {
            request_stop(RunOutcome{RunOutcome::Kind::kFailure, 1,
                                    "vCPU " + std::to_string(index) + " cannot continue: " + failure.detail});
            return false;
          },
      },
      exit);
}

void Machine::park_if_paused(unsigned index) {
  std::unique_lock lock(mutex_);
  if (state_ != State::kPaused) return;
  ++parked_vcpus_;
  state_changed_.notify_all();
  state_changed_.wait(lock, [this] { return state_ != State::kPaused; });
  --parked_vcpus_;
}

void Machine::pause() {
  std::unique_lock lock(mutex_);
  if (state_ != State::kRunning) return;
  state_ = State::kPaused;
  for (auto& v : vcpus_) v->kick();
  state_changed_.wait(lock,
                      [this] { return parked_vcpus_ + halted_vcpus_ == threads_.size() || state_ != State::kPaused; });
}

void Machine::resume() {
  std::lock_guard lock(mutex_);
  if (state_ != State::kPaused) return;
  state_ = State::kRunning;
  state_changed_.notify_all();
}

void Machine::request_stop(RunOutcome outcome) {
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::kStopped) {
      // A quit (signal, Ctrl-A x) wins over a reset that came first, or the
      // caller would reboot a guest the user asked to stop.
      if (outcome_ && outcome_->kind == RunOutcome::Kind::kReset && outcome.kind == RunOutcome::Kind::kUserQuit)
        outcome_ = std::move(outcome);
      return;
    }
    state_ = State::kStopped;
    outcome_ = std::move(outcome);
  }
  state_changed_.notify_all();
  for (auto& v : vcpus_) v->kick();
}

void Machine::request_exit(int status) { request_stop(RunOutcome{RunOutcome::Kind::kDebugExit, status, ""}); }

void Machine::request_reset() {
  request_stop(RunOutcome{RunOutcome::Kind::kReset, 3, "the guest reset the machine; ending the run"});
}

void Machine::request_poweroff() { request_stop(RunOutcome{RunOutcome::Kind::kPowerOff, 0, ""}); }

}  // namespace hostvisor
