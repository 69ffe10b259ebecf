// An AHCI 1.3.1 SATA host bus adapter as Intel's ICH9 presents it (PCI
// 8086:2922, class 01.06.01, its registers in BAR 5), with an ATAPI CD-ROM
// on each of its ports. This is `--cdrom ISO,bus=ahci`: what installers,
// SeaBIOS's AHCI driver and kernels without virtio drivers (Linux's ahci,
// Windows' storahci) expect.
//
// The HBA registers (CAP, GHC with AE/IE/HR, IS, PI, VS, CAP2) and each
// port's (CLB/FB, IS/IE, CMD with ST/FRE/CR/FR/CLO, TFD, SIG, SSTS/SCTL
// with COMRESET, SERR, SACT, CI). A write to PxCI runs the issued commands
// at once, on the writing vCPU's thread, in slot order: each is read from
// the command list (ahci_command.h), its register FIS goes to the drive
// (atapi_cdrom.h), data-in lands in the PRDT's regions, and the answer
// comes back as a PIO setup and/or D2H register FIS in the FIS receive
// area, PxTFD and PxIS. Interrupts go out as MSI when the guest enabled
// it, else on INTA.
//
// What the guest controls is hostile: a command or data region outside RAM
// is a host bus fatal error (PxIS.HBFS) that stops the port until software
// restarts it (clears and sets PxCMD.ST), as a real HBA stops on a master
// abort; a failed command (ERR in the status) is a task file error
// (PxIS.TFES), which also stops the port with the command still issued
// (AHCI 6.2.2). Nothing the guest writes allocates host memory beyond one
// command's PRDT.
//
// Thread-safe: one lock for the registers and command processing.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/ahci/atapi_cdrom.h"
#include "devices/bus/irq_line.h"
#include "devices/pci/msi.h"
#include "devices/pci/pci_device.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class AhciController : public PciDevice {
 public:
  // ICH9 has six SATA ports.
  static constexpr unsigned kMaxPorts = 6;

  // One port for each drive, in order (1 to kMaxPorts drives).
  AhciController(GuestMemory& memory, std::vector<std::unique_ptr<AtapiCdrom>> drives);
  // Opens each image read-only (raw or qcow2) and puts it on the next port.
  static Result<std::shared_ptr<AhciController>> open(GuestMemory& memory, const std::vector<std::string>& paths);

  std::string_view name() const override { return "ahci"; }
  uint32_t config_read(uint16_t offset, unsigned size) override;
  void config_write(uint16_t offset, unsigned size, uint32_t value) override;
  void bar_read(int bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(int bar, uint64_t offset, std::span<const uint8_t> data) override;
  void attached(const PciAttachment& attachment) override;
  PciConfigSpace& config_space() override { return config_; }

  unsigned port_count() const { return static_cast<unsigned>(ports_.size()); }
  AtapiCdrom& drive(unsigned port) { return *ports_[port].drive; }
  // Commands completed without error, for tests.
  uint64_t commands_completed() const;

  // Snapshot: the config space, GHC and every port's registers and drive.
  struct PortState {
    uint64_t command_list = 0;
    uint64_t fis_area = 0;
    uint32_t interrupt_status = 0;
    uint32_t interrupt_enable = 0;
    uint32_t command = 0;
    uint32_t task_file = 0;
    uint32_t signature = 0;
    uint32_t serial_control = 0;
    uint32_t serial_error = 0;
    uint32_t active = 0;
    uint32_t issued = 0;
    bool halted = false;
    bool device_reset = false;
    AtapiCdrom::State drive;
  };
  struct State {
    PciConfigSpace::State config;
    uint32_t global_control = 0;
    std::vector<PortState> ports;
  };
  static constexpr uint32_t kStateVersion = 1;
  State save() const;
  Result<void> restore(const State& state);
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  struct Port {
    std::unique_ptr<AtapiCdrom> drive;
    uint64_t clb = 0;
    uint64_t fb = 0;
    uint32_t is = 0;
    uint32_t ie = 0;
    uint32_t cmd = 0;  // the software-written bits (ST, FRE, ...)
    uint32_t tfd = 0;
    uint32_t sig = 0;
    uint32_t sctl = 0;
    uint32_t serr = 0;
    uint32_t sact = 0;
    uint32_t ci = 0;
    // Stopped on an error until software clears PxCMD.ST.
    bool halted = false;
    // A device control FIS set SRST; the device answers when it is cleared.
    bool device_reset = false;
    bool warned = false;
  };

  uint32_t read_register(uint32_t offset);
  void write_register(uint32_t offset, uint32_t value);
  uint32_t read_port(const Port& port, uint32_t reg) const;
  void write_port(unsigned index, uint32_t reg, uint32_t value);
  void reset_hba();
  void reset_port(Port& port);
  // The device's first D2H FIS after a reset: its signature in PxSIG and PxTFD.
  void device_signature(Port& port);
  void run_commands(unsigned index);
  // Runs one issued command; false when it stopped the port.
  bool run_command(unsigned index, unsigned slot);
  void device_control(Port& port, uint8_t control);
  void fatal_error(unsigned index, const std::string& why);
  void post_fis(const Port& port, uint64_t offset, std::span<const uint8_t> fis);
  void raise(unsigned index, uint32_t bits);
  void update_interrupt(bool new_event);

  mutable std::mutex mutex_;
  GuestMemory& memory_;
  PciConfigSpace config_;
  Msi msi_;
  InterruptController* interrupts_ = nullptr;
  IrqLine intx_;
  uint32_t ghc_ = 0;
  bool pending_ = false;
  std::vector<Port> ports_;
  uint64_t completed_ = 0;
};

}  // namespace hostvisor
