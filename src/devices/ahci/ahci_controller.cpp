#include "devices/ahci/ahci_controller.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "base/log.h"
#include "devices/ahci/ahci_command.h"
#include "devices/ahci/ahci_spec.h"
#include "devices/pci/pci_layout.h"

namespace hostvisor {

using namespace ahci;

namespace {

uint32_t low32(uint64_t value) { return static_cast<uint32_t>(value); }
uint32_t high32(uint64_t value) { return static_cast<uint32_t>(value >> 32); }
uint64_t with_low32(uint64_t value, uint32_t low) { return (value & ~uint64_t{0xffffffff}) | low; }
uint64_t with_high32(uint64_t value, uint32_t high) { return (value & 0xffffffff) | uint64_t{high} << 32; }

uint32_t task_file(const AtaResult& r) { return uint32_t{r.error} << 8 | r.status; }

// The shape both device-to-host FISes share: type, flags, status, error,
// the LBA and device registers, and the count.
std::array<uint8_t, 20> fis_with_registers(uint8_t type, uint8_t flags, uint8_t status, const AtaResult& r) {
  std::array<uint8_t, 20> fis{};
  fis[0] = type;
  fis[1] = flags;
  fis[2] = status;
  fis[3] = r.error;
  fis[4] = r.lba_low;
  fis[5] = r.lba_mid;
  fis[6] = r.lba_high;
  fis[7] = r.device;
  fis[12] = r.count;
  return fis;
}

// A D2H register FIS (SATA 10.5.6) carrying `r`.
std::array<uint8_t, 20> d2h_fis(const AtaResult& r, bool interrupt) {
  return fis_with_registers(kFisRegD2h, interrupt ? kFisInterruptBit : 0, r.status, r);
}

// A PIO setup FIS (SATA 10.5.11) for a data-in transfer of `r`: DRQ set in
// the status the transfer starts with, the final status in E_Status.
std::array<uint8_t, 20> pio_setup_fis(const AtaResult& r) {
  std::array<uint8_t, 20> fis = fis_with_registers(kFisPioSetup, kFisDirectionToHost | kFisInterruptBit,
                                                   static_cast<uint8_t>((r.status & ~kStatusErr) | kStatusDrq), r);
  fis[15] = r.status;
  const uint16_t count = static_cast<uint16_t>(std::min<uint64_t>(r.transferred, 0xfffe));
  fis[16] = static_cast<uint8_t>(count);
  fis[17] = static_cast<uint8_t>(count >> 8);
  return fis;
}

}  // namespace

AhciController::AhciController(GuestMemory& memory, std::vector<std::unique_ptr<AtapiCdrom>> drives)
    : memory_(memory),
      config_(PciConfigSpace::Identity{.vendor_id = kVendorId,
                                       .device_id = kDeviceId,
                                       .revision = 2,
                                       .class_code = kClassCode,
                                       .subsystem_vendor_id = pci::kQemuSubsystemVendor,
                                       .subsystem_id = pci::kQemuSubsystemId}) {
  (void)config_.add_bar(kAbarIndex, PciBarInfo{.kind = PciBarKind::kMemory32, .size = kAbarSize});
  config_.set_interrupt_pin(1);
  (void)msi_.install(config_);
  for (auto& drive : drives) {
    if (ports_.size() == kMaxPorts) break;
    Port port;
    port.drive = std::move(drive);
    ports_.push_back(std::move(port));
  }
  reset_hba();
}

Result<std::shared_ptr<AhciController>> AhciController::open(GuestMemory& memory,
                                                             const std::vector<std::string>& paths) {
  if (paths.empty() || paths.size() > kMaxPorts)
    return Error(ErrorCode::kInvalidArgument, "the AHCI controller has " + std::to_string(kMaxPorts) +
                                                  " ports: give 1 to " + std::to_string(kMaxPorts) +
                                                  " CD-ROMs with bus=ahci");
  std::vector<std::unique_ptr<AtapiCdrom>> drives;
  for (const std::string& path : paths) drives.push_back(std::make_unique<AtapiCdrom>(HV_TRY(MmcCdrom::open(path))));
  return std::make_shared<AhciController>(memory, std::move(drives));
}

void AhciController::attached(const PciAttachment& attachment) {
  std::lock_guard lock(mutex_);
  interrupts_ = attachment.interrupts;
  intx_ = IrqLine(attachment.interrupts, attachment.intx_gsi);
}

uint32_t AhciController::config_read(uint16_t offset, unsigned size) {
  std::lock_guard lock(mutex_);
  return config_.read(offset, size);
}

void AhciController::config_write(uint16_t offset, unsigned size, uint32_t value) {
  std::lock_guard lock(mutex_);
  config_.write(offset, size, value);
  // Interrupt Disable, or MSI switched on or off.
  update_interrupt(false);
}

uint64_t AhciController::commands_completed() const {
  std::lock_guard lock(mutex_);
  return completed_;
}

// Registers are dwords; a wider access is split, a narrower read takes its
// bytes of the dword, and a narrower write is dropped (the registers with
// side effects must not see half a value).
void AhciController::bar_read(int bar, uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (bar != kAbarIndex || offset >= kAbarSize) return;
  std::lock_guard lock(mutex_);
  for (size_t done = 0; done < data.size();) {
    const uint64_t at = offset + done;
    const uint64_t dword = at & ~uint64_t{3};
    if (dword >= kAbarSize) break;
    const uint32_t value = read_register(static_cast<uint32_t>(dword));
    const size_t from = at - dword;
    const size_t n = std::min<size_t>(4 - from, data.size() - done);
    for (size_t i = 0; i < n; ++i) data[done + i] = static_cast<uint8_t>(value >> (8 * (from + i)));
    done += n;
  }
}

void AhciController::bar_write(int bar, uint64_t offset, std::span<const uint8_t> data) {
  if (bar != kAbarIndex || offset >= kAbarSize || (offset & 3) || (data.size() != 4 && data.size() != 8)) return;
  std::lock_guard lock(mutex_);
  for (size_t done = 0; done < data.size() && offset + done < kAbarSize; done += 4) {
    uint32_t value;
    std::memcpy(&value, data.data() + done, 4);
    write_register(static_cast<uint32_t>(offset + done), value);
  }
}

uint32_t AhciController::read_register(uint32_t offset) {
  if (offset >= kPortBase) {
    const uint32_t index = (offset - kPortBase) / kPortStride;
    if (index >= ports_.size()) return 0;
    return read_port(ports_[index], (offset - kPortBase) % kPortStride);
  }
  switch (offset) {
    case kCap:
      return kCapS64a | kCapSam | (1u << 24) /* SCLO */ | kCapIssGen1 | (kCommandSlots - 1) << kCapNcsShift |
             static_cast<uint32_t>(ports_.size() - 1);
    case kGhc: return ghc_ | kGhcAe;
    case kIs: {
      uint32_t is = 0;
      for (size_t i = 0; i < ports_.size(); ++i)
        if (ports_[i].is & ports_[i].ie) is |= 1u << i;
      return is;
    }
    case kPi: return (1u << ports_.size()) - 1;
    case kVs: return kVersion13;
    default: return 0;  // CCC, enclosure management, CAP2, BOHC: none of it
  }
}

void AhciController::write_register(uint32_t offset, uint32_t value) {
  if (offset >= kPortBase) {
    const uint32_t index = (offset - kPortBase) / kPortStride;
    if (index < ports_.size()) write_port(index, (offset - kPortBase) % kPortStride, value);
    return;
  }
  if (offset == kGhc) {
    if (value & kGhcHr) {
      // The reset is done before the write returns, so HR reads 0 again.
      reset_hba();
    } else {
      ghc_ = value & kGhcIe;
    }
    update_interrupt(false);
  } else if (offset == kIs) {
    // IS follows the ports' enabled PxIS bits: clearing those clears it.
    update_interrupt(false);
  }
}

uint32_t AhciController::read_port(const Port& port, uint32_t reg) const {
  const bool link_up = (port.sctl & kSctlDetMask) == 0;
  switch (reg) {
    case kPxClb: return low32(port.clb);
    case kPxClbu: return high32(port.clb);
    case kPxFb: return low32(port.fb);
    case kPxFbu: return high32(port.fb);
    case kPxIs: return port.is;
    case kPxIe: return port.ie;
    case kPxCmd: {
      uint32_t cmd = port.cmd | kCmdSud | kCmdPod;
      if (cmd & kCmdSt) cmd |= kCmdCr;
      if (cmd & kCmdFre) cmd |= kCmdFr;
      return cmd;
    }
    case kPxTfd: return port.tfd;
    case kPxSig: return port.sig;
    case kPxSsts: return link_up ? kSstsLinkUp : 0;
    case kPxSctl: return port.sctl;
    case kPxSerr: return port.serr;
    case kPxSact: return port.sact;
    case kPxCi: return port.ci;
    default: return 0;
  }
}

void AhciController::write_port(unsigned index, uint32_t reg, uint32_t value) {
  Port& port = ports_[index];
  switch (reg) {
    case kPxClb: port.clb = with_low32(port.clb, value & ~uint32_t{kCommandListAlign - 1}); break;
    case kPxClbu: port.clb = with_high32(port.clb, value); break;
    case kPxFb: port.fb = with_low32(port.fb, value & ~uint32_t{kFisAreaAlign - 1}); break;
    case kPxFbu: port.fb = with_high32(port.fb, value); break;
    case kPxIs:
      port.is &= ~(value & kIsWriteOneToClear);
      update_interrupt(false);
      break;
    case kPxIe:
      port.ie = value & kIeWritable;
      update_interrupt(false);
      break;
    case kPxCmd: {
      const uint32_t old = port.cmd;
      port.cmd = value & kCmdWritable;
      if (value & kCmdClo) port.tfd &= ~uint32_t{kStatusBsy | kStatusDrq};  // command list override
      if ((old & kCmdSt) && !(port.cmd & kCmdSt)) {
        // Stopping the engine drops what was issued (AHCI 3.3.7, 3.3.14).
        port.ci = 0;
        port.sact = 0;
        port.halted = false;
      } else if (!(old & kCmdSt) && (port.cmd & kCmdSt)) {
        run_commands(index);
      }
      break;
    }
    case kPxSctl: {
      const uint32_t old_det = port.sctl & kSctlDetMask;
      port.sctl = value & 0xfff;
      const uint32_t det = port.sctl & kSctlDetMask;
      if (det == kSctlDetComreset) {
        // COMRESET: the device is in reset while DET stays 1.
        port.tfd = kStatusBsy;
      } else if (det == 0 && old_det != 0) {
        device_signature(port);
      }
      break;
    }
    case kPxSerr: port.serr &= ~value; break;
    case kPxSact:
      if (port.cmd & kCmdSt) port.sact |= value;
      break;
    case kPxCi:
      if (port.cmd & kCmdSt) {
        port.ci |= value;
        run_commands(index);
      }
      break;
    default: break;  // read-only or not implemented
  }
}

void AhciController::reset_hba() {
  ghc_ = 0;
  for (Port& port : ports_) reset_port(port);
  update_interrupt(false);
}

void AhciController::reset_port(Port& port) {
  port.clb = 0;
  port.fb = 0;
  port.is = 0;
  port.ie = 0;
  port.cmd = 0;
  port.sctl = 0;
  port.serr = 0;
  port.sact = 0;
  port.ci = 0;
  port.halted = false;
  port.device_reset = false;
  port.warned = false;
  device_signature(port);
}

void AhciController::device_signature(Port& port) {
  const AtaResult r = AtapiCdrom::signature();
  port.sig = kSignatureAtapi;
  port.tfd = task_file(r);
  port.device_reset = false;
  post_fis(port, kRfisD2h, d2h_fis(r, false));
}

void AhciController::run_commands(unsigned index) {
  Port& port = ports_[index];
  // Bus mastering off: the HBA cannot reach memory, so nothing runs yet.
  if (!(config_.command() & pci_command::kBusMaster)) return;
  while (!port.halted && (port.cmd & kCmdSt) && port.ci != 0) {
    const unsigned slot = static_cast<unsigned>(__builtin_ctz(port.ci));
    if (!run_command(index, slot)) return;
    port.ci &= ~(1u << slot);
  }
}

bool AhciController::run_command(unsigned index, unsigned slot) {
  Port& port = ports_[index];
  auto parsed = ahci::read_command(memory_, port.clb, slot);
  if (!parsed) {
    fatal_error(index, parsed.error().message());
    return false;
  }
  const Command& command = *parsed;
  if (!command.is_command_fis()) {
    device_control(port, command.cfis[15]);
    return true;
  }
  AtaTaskfile taskfile;
  taskfile.command = command.cfis[2];
  taskfile.features = command.cfis[3];
  taskfile.lba_low = command.cfis[4];
  taskfile.lba_mid = command.cfis[5];
  taskfile.lba_high = command.cfis[6];
  taskfile.device = command.cfis[7];
  taskfile.count = command.cfis[12];

  PrdtWriter writer(memory_, command.prdt);
  bool sink_failed = false;
  const MmcCdrom::DataSink sink = [&](uint64_t offset, std::span<const uint8_t> bytes) {
    if (writer.write(offset, bytes)) return true;
    sink_failed = true;
    return false;
  };
  // No command of a CD-ROM takes data from the host: a write command gets no room.
  const uint64_t room = command.write() ? 0 : command.data_room;
  const AtaResult result = port.drive->execute(taskfile, command.acmd, room, sink);
  if (sink_failed) {
    fatal_error(index, "a PRDT region of the command in slot " + std::to_string(slot) + " is outside RAM");
    return false;
  }
  // PRDBC: the bytes transferred.
  const uint32_t transferred = static_cast<uint32_t>(std::min<uint64_t>(result.transferred, 0xffffffffu));
  const uint64_t header = port.clb + slot * kCommandHeaderBytes + 4;
  if (memory_.write_obj(GuestAddress(header), transferred)) memory_.note_dma_write(GuestAddress(header), 4);

  uint32_t events = 0;
  if (result.pio && result.transferred > 0) {
    post_fis(port, kRfisPioSetup, pio_setup_fis(result));
    events |= kIsPss;
  }
  if (!result.ends_with_pio_setup) {
    post_fis(port, kRfisD2h, d2h_fis(result, true));
    events |= kIsDhrs;
  }
  port.tfd = task_file(result);
  if (result.failed()) {
    // A task file error stops the port with the command still issued.
    events |= kIsTfes;
    port.halted = true;
    raise(index, events);
    return false;
  }
  ++completed_;
  raise(index, events);
  return true;
}

void AhciController::device_control(Port& port, uint8_t control) {
  // A device control FIS (C clear): SRST set puts the device in reset,
  // clearing it makes the device send its signature (ATA software reset,
  // as Linux's softreset and AHCI 10.4.1 do it).
  if (control & kControlSrst) {
    port.device_reset = true;
    port.tfd = kStatusBsy;
  } else if (port.device_reset) {
    device_signature(port);
  }
}

void AhciController::fatal_error(unsigned index, const std::string& why) {
  Port& port = ports_[index];
  if (!port.warned) {
    HV_LOG_WARN("AHCI port {}: {}; the port stops until the guest restarts it", index, why);
    port.warned = true;
  }
  port.halted = true;
  raise(index, kIsHbfs);
}

void AhciController::post_fis(const Port& port, uint64_t offset, std::span<const uint8_t> fis) {
  // Only with FIS receive on, and only into RAM (anything else is dropped).
  if (!(port.cmd & kCmdFre)) return;
  if (memory_.write(GuestAddress(port.fb + offset), fis))
    memory_.note_dma_write(GuestAddress(port.fb + offset), fis.size());
}

void AhciController::raise(unsigned index, uint32_t bits) {
  Port& port = ports_[index];
  port.is |= bits;
  update_interrupt((bits & port.ie) != 0);
}

void AhciController::update_interrupt(bool new_event) {
  const bool pending = (ghc_ & kGhcIe) && read_register(kIs) != 0;
  if (msi_.enabled(config_)) {
    intx_.set_level(false);
    config_.set_interrupt_status(false);
    // One message per new event, and one when enabled events become pending.
    if (pending && (new_event || !pending_)) msi_.signal(config_, interrupts_);
  } else {
    const bool level = pending && !(config_.command() & pci_command::kInterruptDisable);
    intx_.set_level(level);
    config_.set_interrupt_status(pending);
  }
  pending_ = pending;
}

AhciController::State AhciController::save() const {
  std::lock_guard lock(mutex_);
  State state;
  state.config = config_.save();
  state.global_control = ghc_;
  for (const Port& port : ports_) {
    state.ports.push_back(PortState{.command_list = port.clb,
                                    .fis_area = port.fb,
                                    .interrupt_status = port.is,
                                    .interrupt_enable = port.ie,
                                    .command = port.cmd,
                                    .task_file = port.tfd,
                                    .signature = port.sig,
                                    .serial_control = port.sctl,
                                    .serial_error = port.serr,
                                    .active = port.sact,
                                    .issued = port.ci,
                                    .halted = port.halted,
                                    .device_reset = port.device_reset,
                                    .drive = port.drive->save()});
  }
  return state;
}

Result<void> AhciController::restore(const State& state) {
  std::lock_guard lock(mutex_);
  if (state.ports.size() != ports_.size())
    return Error(ErrorCode::kInvalidArgument, "the AHCI state has " + std::to_string(state.ports.size()) +
                                                  " ports, this controller " + std::to_string(ports_.size()));
  HV_TRY(config_.restore(state.config));
  ghc_ = state.global_control & kGhcIe;
  for (size_t i = 0; i < ports_.size(); ++i) {
    const PortState& s = state.ports[i];
    Port& port = ports_[i];
    port.clb = s.command_list & ~(kCommandListAlign - 1);
    port.fb = s.fis_area & ~(kFisAreaAlign - 1);
    port.is = s.interrupt_status;
    port.ie = s.interrupt_enable & kIeWritable;
    port.cmd = s.command & kCmdWritable;
    port.tfd = s.task_file;
    port.sig = s.signature;
    port.sctl = s.serial_control & 0xfff;
    port.serr = s.serial_error;
    port.sact = s.active;
    port.ci = s.issued;
    port.halted = s.halted;
    port.device_reset = s.device_reset;
    port.drive->restore(s.drive);
  }
  pending_ = false;
  update_interrupt(false);
  return ok();
}

void AhciController::encode_state(StateWriter& out, const State& state) {
  PciConfigSpace::encode_state(out, state.config);
  out.put(state.global_control);
  out.put(static_cast<uint32_t>(state.ports.size()));
  for (const PortState& port : state.ports) {
    out.put(port.command_list);
    out.put(port.fis_area);
    for (uint32_t value : {port.interrupt_status, port.interrupt_enable, port.command, port.task_file, port.signature,
                           port.serial_control, port.serial_error, port.active, port.issued})
      out.put(value);
    out.put_bool(port.halted);
    out.put_bool(port.device_reset);
    AtapiCdrom::encode_state(out, port.drive);
  }
}

AhciController::State AhciController::decode_state(StateReader& in) {
  State state;
  state.config = PciConfigSpace::decode_state(in);
  state.global_control = in.get<uint32_t>();
  const uint32_t ports = in.get<uint32_t>();
  if (ports > kMaxPorts) {
    in.fail(std::to_string(ports) + " ports, more than an AHCI controller here has");
    return state;
  }
  for (uint32_t i = 0; i < ports && in.ok(); ++i) {
    PortState port;
    port.command_list = in.get<uint64_t>();
    port.fis_area = in.get<uint64_t>();
    for (uint32_t* value : {&port.interrupt_status, &port.interrupt_enable, &port.command, &port.task_file,
                            &port.signature, &port.serial_control, &port.serial_error, &port.active, &port.issued})
      *value = in.get<uint32_t>();
    port.halted = in.get_bool();
    port.device_reset = in.get_bool();
    port.drive = AtapiCdrom::decode_state(in);
    state.ports.push_back(port);
  }
  return state;
}

}  // namespace hostvisor
