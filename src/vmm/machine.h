// The Machine: a MachineConfig turned into a VM — guest RAM, a backend Vm
// and its vCPUs, the buses with their devices, the loaded kernel — and its
// lifecycle: run, pause, resume, stop. The vCPU threads and their exit
// dispatch are the VcpuRunner's; the legacy devices' wiring is in
// legacy_devices.cpp, the RTC's timer in rtc_timer.cpp.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/bus/bus.h"
#include "devices/pci/pci_bar_mapper.h"
#include "devices/pci/pci_root.h"
#include "devices/system_control.h"
#include "devices/virtio/balloon/virtio_balloon.h"
#include "hv/hypervisor.h"
#include "memory/guest_memory.h"
#include "net/host_forward.h"
#include "vmm/boot_order.h"
#include "vmm/console.h"
#include "vmm/console_output.h"
#include "vmm/console_port_socket.h"
#include "vmm/event_loop.h"
#include "vmm/guest_clock_sync.h"
#include "vmm/machine_config.h"
#include "vmm/rtc_timer.h"
#include "vmm/run_outcome.h"
#include "vmm/state_component.h"
#include "vmm/stop_signals.h"
#include "vmm/terminal_stand_in.h"
#include "vmm/vcpu_runner.h"
#include "vmm/virtio_mmio_slots.h"
#include "vmm/virtio_pci_fastpath.h"

namespace hostvisor {

class Serial8250;
class VirtioBlk;
class VirtioDevice;
class VirtioConsole;
class VirtioNet;
class VirtioVsock;
class CmosRtc;
class AcpiPmBlock;
class FwCfg;
class VmGenerationId;
namespace arch {
struct MemoryLayout;
}
namespace snapshot {
class Snapshot;
}

// How a restore brings guest RAM back from the snapshot's memory file.
enum class RestoreMode {
  kMap,   // MAP_PRIVATE: lazy, copy-on-write; the file must stay unchanged while the VM runs
  kCopy,  // read into fresh RAM
};

struct RestoreOptions {
  RestoreMode mode = RestoreMode::kMap;
  // A clone: each NIC gets a new MAC (the snapshot's stays with the original).
  bool clone = false;
};

// Where a run's machines send their console, beyond the configuration.
struct MachineConsole {
  std::shared_ptr<ConsoleOutput> output;  // null: the terminal (stdout)
  bool headless = false;                  // stdin is not read: no terminal input, no console keys
};

// One NIC, for the control socket's info (index: among the NICs that exist,
// --net none skipped).
struct NicInfo {
  std::string kind;  // "user", "tap", ...
  std::string mac;
};

// One disk, for the control socket's info (by --disk index).
struct DiskInfo {
  std::string path;    // the image written now (after a snapshot, its overlay)
  std::string format;  // "raw", "qcow2"
  bool read_only = false;
};

// The counters the control socket's metrics op reports.
struct MachineMetrics {
  std::vector<VcpuExitCounts> vcpus;
  struct Disk {
    uint64_t read_ops = 0, write_ops = 0, read_bytes = 0, write_bytes = 0, flush_ops = 0;
  };
  std::vector<Disk> disks;
  struct Nic {
    uint64_t rx_packets = 0, tx_packets = 0, rx_bytes = 0, tx_bytes = 0, rx_dropped = 0, tx_dropped = 0;
  };
  std::vector<Nic> nics;
  uint64_t guest_bytes = 0;
  uint64_t host_rss_bytes = 0;
  std::optional<BalloonStatus> balloon;
};

// What save_snapshot() wrote.
struct SnapshotSummary {
  uint64_t memory_data_bytes = 0;  // non-zero RAM written
  uint64_t state_bytes = 0;
  double seconds = 0;
};

class Machine final : public SystemControl {
 public:
  // Builds the machine; nothing runs until run(). `signals` (installed
  // before this, so every thread the machine starts inherits their mask)
  // must outlive the machine: its stop signals end the run.
  static Result<std::unique_ptr<Machine>> create(const MachineConfig& config, StopSignals& signals,
                                                 const MachineConsole& console = {});
  // Builds the machine a snapshot was taken of (`config` decoded from its
  // header, with the caller's changes: disk overlays, the backend) and puts
  // every component in its saved state; run() then continues the guest.
  // Fails, with nothing running, if any record is missing, damaged or does
  // not fit the machine.
  static Result<std::unique_ptr<Machine>> restore(const MachineConfig& config, const snapshot::Snapshot& snapshot,
                                                  const RestoreOptions& options, StopSignals& signals,
                                                  const MachineConsole& console = {});
  ~Machine() override;

  const std::string& accel_reason() const { return accel_reason_; }
  // How a restore brought RAM back: the mode asked for, or copy when the
  // memory options cannot work on a mapped file (mapped_restore_conflict).
  RestoreMode restored_with() const { return restored_with_; }
  // A clone's NICs, in order: the snapshot's MAC and the clone's new one
  // (empty unless restored with --clone).
  const std::vector<GuestClockSync::MacChange>& clone_macs() const { return clone_macs_; }
  // The unix socket the vsock device's host side listens on; empty without one.
  std::string vsock_socket() const { return config_.vsock ? config_.vsock->uds_path : std::string(); }
  const char* backend_name() const { return hypervisor_->name(); }

  // Starts the vCPUs and the console and blocks until the guest ends.
  RunOutcome run();

  // The configuration it runs (after a snapshot, its disks are the overlays).
  const MachineConfig& config() const { return config_; }
  const std::string& snapshot_dir() const { return snapshot_dir_; }

  // Runs `task` on the event loop's thread once it runs (Machine::run); a
  // task still queued when the run ends is destroyed without running.
  // Thread-safe: the control socket's operations go through it.
  void post(std::function<void()> task) { event_loop_->post(std::move(task)); }

  // The ACPI power button (the guest decides: the default guest powers off).
  // Thread-safe.
  void press_power_button();

  // For the control socket, on the event loop's thread (post()):
  // host forwards added to and removed from a running user-mode NAT NIC
  // (`nic` as in nics()); the console attachments' input; the counters.
  Result<void> add_host_forward(unsigned nic, const net::HostForward& forward);
  Result<void> remove_host_forward(unsigned nic, const net::HostForward& forward);
  void console_input(std::span<const uint8_t> bytes);
  std::vector<NicInfo> nics() const;
  std::vector<DiskInfo> disks() const;
  // Thread-safe.
  MachineMetrics metrics() const;

  // Thread-safe lifecycle control (the API and the console use these); see
  // VcpuRunner for what each answer means. While paused, vcpu_registers()
  // reads a vCPU's registers.
  RunResponse pause();
  RunResponse resume();
  // resume(), and the guest's wall clock is set again by its agent (it
  // stood still while paused). On the event loop's thread.
  RunResponse resume_and_sync();
  void request_stop(RunOutcome outcome);
  RunState state() const { return runner_->state(); }
  Result<Registers> vcpu_registers(unsigned index) { return runner_->registers(index); }

  // Writes a snapshot of the machine to `dir` (atomically; an older
  // snapshot there is replaced): pauses the vCPUs if they run, lets every
  // device finish or give back what it has in flight, saves each
  // component's state and guest RAM, and resumes if it was running. Call it
  // on the event loop's thread (the console keys do) or while the loop is
  // stopped, so no device turn runs meanwhile.
  Result<SnapshotSummary> save_snapshot(const std::string& dir);
  // Where Ctrl-A s / Ctrl-A S write (empty: the keys say there is nowhere).
  void set_snapshot_dir(std::string dir) { snapshot_dir_ = std::move(dir); }

  // The balloon (--balloon), for the console key and the control API;
  // thread-safe. Asks the guest to hand `bytes` of its RAM over to the host
  // (in whole 4 KiB pages, rounded down; 0 gives it all back). Fails if the
  // machine has no balloon or `bytes` is not below the guest's RAM.
  Result<void> set_balloon_size(uint64_t bytes);
  // Nothing if the machine has no balloon.
  std::optional<BalloonStatus> balloon_status() const;

  // SystemControl, called by devices.
  void request_exit(int status) override;
  void request_reset() override;
  void request_poweroff() override;

 private:
  Machine(const MachineConfig& config, StopSignals& signals, const MachineConsole& console)
      : config_(config), signals_(signals), console_options_(console) {}
  // Where the guest's console devices print.
  void console_write(std::span<const uint8_t> bytes);
  // Builds a new machine (snapshot null: RAM cleared, kernel loaded) or the
  // one `snapshot` holds.
  Result<void> build(const snapshot::Snapshot* snapshot, const RestoreOptions& options);
  Result<void> load_kernel_and_boot_vcpus(const arch::MemoryLayout& layout);
  Result<GuestMemory> restore_memory(const arch::MemoryLayout& layout, const snapshot::Snapshot& snapshot,
                                     RestoreMode mode);
  // Every component's record back into it, then the devices look at their queues again.
  Result<void> restore_components(const snapshot::Snapshot& snapshot);
  // The vCPUs and the interrupt controllers, as components.
  void add_cpu_components();
  // Ctrl-A s (and_quit false) / Ctrl-A S: the console's line.
  std::string snapshot_key(bool and_quit);
  // The PCI root complex (0xCF8 and ECAM) and the virtio devices on it.
  Result<void> add_pci_devices();
  // A virtio-net device on the backend `option` names (tap, user-mode NAT).
  Result<void> add_net(const net::NetOption& option, VirtioTransport transport);
  Result<void> watch_net_backend(const std::shared_ptr<VirtioNet>& net);
  // virtio-vsock with its unix-socket host side served on the event loop.
  Result<void> add_vsock(const VsockConfig& config);
  // virtio-fs for one --share, its FUSE server in this process.
  Result<void> add_share(const ShareConfig& config);
  // Each NIC's traffic counters, at info level, once the run is over.
  void log_net_counters();
  // Puts `device` on the PCI root behind the virtio-pci transport, with the
  // backend's fast paths (ioeventfd notifies, irqfd MSI-X) where it has them.
  // `placed`, if given, gets the function's address.
  Result<std::shared_ptr<VirtioPciDevice>> plug_virtio_pci(std::shared_ptr<VirtioDevice> device,
                                                           PciAddress* placed = nullptr);
  // A --cdrom drive on its virtio-scsi controller; with a bootindex, a boot candidate.
  Result<void> add_cdrom(const CdromConfig& config);
  // The bus=ahci drives, on the ports of one AHCI controller in order.
  Result<void> add_ahci_cdroms(const std::vector<CdromConfig>& drives);
  void add_virtio_components(const std::string& tag, const std::shared_ptr<VirtioDevice>& device);
  // Puts `device` on PCI (plug_virtio_pci) or in a virtio-mmio slot.
  Result<void> plug_virtio(std::shared_ptr<VirtioDevice> device, VirtioTransport transport);
  // Answers virtio-blk's asynchronous requests from the event loop.
  Result<void> watch_blk_completions(const std::shared_ptr<VirtioBlk>& blk);
  // Runs the turns a virtio device reschedules (the rest of a bounded drain,
  // a retry) on the event loop.
  Result<void> watch_virtio_reschedule(const std::shared_ptr<VirtioDevice>& device);
  // ACPI tables in guest memory, the PM block they describe and the VM
  // generation ID; CMOS memory size. With write_tables false (a restore) the
  // tables and the ID are already in RAM.
  Result<void> add_firmware_tables(const arch::MemoryLayout& layout, bool write_tables);
  Result<void> setup_console();
  bool has_firmware() const { return config_.firmware != FirmwareKind::kNone; }
  // Port 0x402, where firmware built for QEMU writes its debug log.
  Result<void> add_firmware_debug_console();
  Result<void> add_uefi_flash(UefiFlash flash);
  Result<void> add_balloon(const BalloonConfig& config);
  // Ctrl-A b: the question the console asks, and what it shows for the answer.
  std::string balloon_prompt() const;
  std::string balloon_key(const std::string& answer);
  // Ctrl-A p: pauses a running guest or resumes a paused one; returns the
  // line the console shows.
  std::string toggle_pause();
  // Stops the run if a stop signal is (or was) pending; passes SIGWINCH on.
  void take_signals();

  MachineConfig config_;
  StopSignals& signals_;
  MachineConsole console_options_;
  std::string accel_reason_;
  RestoreMode restored_with_ = RestoreMode::kCopy;
  std::unique_ptr<Hypervisor> hypervisor_;
  GuestMemory memory_;
  std::unique_ptr<Vm> vm_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  Bus pio_bus_{"port I/O", 0xffff};
  Bus mmio_bus_{"MMIO"};
  // Before the devices: the console's output goes through it. Null with a
  // terminal on stdin or stdout (terminal_stand_in.h).
  std::unique_ptr<TerminalStandIn> terminal_stand_in_;
  // Before the devices: they may call into it until they are destroyed.
  std::unique_ptr<EventLoop> event_loop_;
  std::unique_ptr<BusBarMapper> bar_mapper_;
  // Wraps bar_mapper_; after vm_ and event_loop_ (it uses both until it is destroyed).
  std::unique_ptr<VirtioPciFastPath> fastpath_;
  std::unique_ptr<PciRoot> pci_root_;  // after the mappers: the root uses them
  std::unique_ptr<VirtioMmioSlots> virtio_mmio_;
  std::shared_ptr<VirtioConsole> virtio_console_;
  // --qga: the guest agent port's socket (after event_loop_, which it uses).
  std::unique_ptr<ConsolePortSocket> qga_socket_;
  std::vector<std::shared_ptr<VirtioNet>> nets_;
  std::vector<std::string> net_kinds_;            // by nets_ index
  std::vector<std::shared_ptr<VirtioBlk>> blks_;  // by config_.disks index
  // Devices given a bootindex, for fw_cfg's bootorder.
  std::vector<BootCandidate> boot_candidates_;
  std::shared_ptr<VirtioBalloon> balloon_;        // null without --balloon
  std::shared_ptr<VirtioVsock> vsock_;
  // The guest agent's clock sync (and a clone's RNG reseed), with vsock only.
  std::unique_ptr<GuestClockSync> clock_sync_;
  std::string restore_sync_reason_;  // set by a restore: sync once running
  bool restore_reseed_ = false;
  // A clone's NICs: the snapshot's MAC and the new one (for the guest agent).
  std::vector<GuestClockSync::MacChange> clone_macs_;
  std::shared_ptr<Serial8250> serial_;
  std::shared_ptr<CmosRtc> rtc_;
  std::shared_ptr<AcpiPmBlock> pm_;
  std::shared_ptr<FwCfg> fw_cfg_;
  std::shared_ptr<VmGenerationId> vm_generation_id_;  // new in each clone
  std::unique_ptr<TerminalConsole> console_;
  std::unique_ptr<RtcTimer> rtc_timer_;  // after event_loop_ and rtc_: it uses both
  // Everything a snapshot saves, in machine order; hold their devices.
  std::vector<StateComponent> components_;
  std::vector<std::shared_ptr<VirtioDevice>> virtio_devices_;
  std::string snapshot_dir_;
  uint64_t acpi_rsdp_ = 0;  // where the ACPI tables start, for the boot protocol
  // Last: its threads use the vCPUs, the buses and the devices on them.
  std::unique_ptr<VcpuRunner> runner_;
};

}  // namespace hostvisor
