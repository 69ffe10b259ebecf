// The emulated PC interrupt and timer chipset, assembled and wired: one
// LocalApic per vCPU, the IOAPIC, the dual 8259 PIC, the 8254 PIT, the APIC
// bus, the shared timer service and the InterruptController devices use.
//
// Wiring done here: PIC INT -> LINT0 of vCPU 0, ExtINT acknowledge -> PIC
// (every LAPIC; only a LAPIC whose LINT0 is ExtINT, or which gets an ExtINT
// message, asks), PIT channel 0 -> ISA IRQ 0 (PIC IRQ 0, IOAPIC pin 2),
// LAPIC EOI broadcasts -> IOAPIC, LAPIC and PIT timers -> PlatformTimers.
//
// Typical use by the emu backend:
//   auto platform = EmuPlatform::create({.vcpu_count = n});
//   vm.interrupts() returns platform->interrupts();
//   platform->attach(port_bus, mmio_bus);             // PIC, PIT, port 0x61, IOAPIC
//   vCPU i uses platform->local_apic(i) (see local_apic.h) and calls
//   local_apic(i).set_wakeup(...) before it first runs.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.h"
#include "devices/bus/bus.h"
#include "devices/legacy/port_61.h"
#include "hv/emu/platform/apic_bus.h"
#include "hv/emu/platform/emu_interrupt_controller.h"
#include "hv/emu/platform/io_apic.h"
#include "hv/emu/platform/local_apic.h"
#include "hv/emu/platform/pic.h"
#include "hv/emu/platform/pit.h"
#include "hv/emu/platform/platform_clock.h"
#include "hv/emu/platform/platform_timers.h"

namespace hostvisor::emu {

struct EmuPlatformConfig {
  unsigned vcpu_count = 1;  // 1-255 (xAPIC ids; 0xFF is broadcast)
  // The clock all timers read; nullptr = a HostClock owned by the platform.
  // An injected clock must outlive the platform; a restore sets it.
  Clock* clock = nullptr;
  // Run the timer thread. Tests with a ManualClock pass false and call
  // timers().run_due() after advancing the clock.
  bool start_timer_thread = true;
  uint8_t io_apic_id = 0;  // what the MADT advertises; distinct from LAPIC ids in spirit only
};

class EmuPlatform {
 public:
  static Result<std::unique_ptr<EmuPlatform>> create(const EmuPlatformConfig& config);
  ~EmuPlatform();  // stops the timer thread before anything else goes away
  EmuPlatform(const EmuPlatform&) = delete;
  EmuPlatform& operator=(const EmuPlatform&) = delete;

  // Inserts the PIC (0x20, 0xA0, 0x4D0), PIT (0x40-0x43), port 0x61 (the
  // shared SystemControlPortB wired to the PIT's channel 2, as KVM's
  // in-kernel PIT claims that port too) and the IOAPIC (0xFEC00000).
  // Fails if a range is already taken. The devices refer to this platform:
  // the buses must stop dispatching to them before the platform is destroyed.
  Result<void> attach(Bus& port_bus, Bus& mmio_bus);

  // Machine reset (reboot, triple fault): every component back to its
  // power-on state, as a PC's RESET line does. vCPU threads should not be
  // running guest code meanwhile.
  void reset();

  unsigned vcpu_count() const { return static_cast<unsigned>(lapics_.size()); }
  LocalApic& local_apic(unsigned vcpu) { return *lapics_.at(vcpu); }
  IoApic& io_apic() { return *io_apic_; }
  Pic& pic() { return *pic_; }
  Pit& pit() { return *pit_; }
  ApicBus& apic_bus() { return *bus_; }
  PlatformTimers& timers() { return *timers_; }
  const Clock& clock() const { return *clock_; }
  EmuInterruptController& interrupts() { return *interrupts_; }
  SystemControlPortB& port61() { return *port61_; }

  // The chipset's part of a snapshot (hv/irqchip_state.h): IOAPIC, PIC,
  // PIT with port 0x61, and the clock. The local APICs belong to the vCPUs'
  // states (hv/vcpu_state.h).
  IrqchipState save() const;
  // Sets the clock first, then the chips. The local APICs' timers and TSCs
  // are carried over to the new clock, so restoring the vCPUs before or
  // after the chipset gives the same result. Fails (kCorrupt) on a damaged
  // port 0x61 state.
  Result<void> restore(const IrqchipState& state);

 private:
  EmuPlatform() = default;

  std::unique_ptr<Clock> owned_clock_;
  Clock* clock_ = nullptr;
  std::unique_ptr<PlatformTimers> timers_;
  std::unique_ptr<ApicBus> bus_;
  std::unique_ptr<Pic> pic_;
  std::unique_ptr<IoApic> io_apic_;
  std::unique_ptr<Pit> pit_;
  std::vector<std::unique_ptr<LocalApic>> lapics_;
  std::unique_ptr<EmuInterruptController> interrupts_;
  std::shared_ptr<SystemControlPortB> port61_;
};

}  // namespace hostvisor::emu
