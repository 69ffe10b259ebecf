// The local APIC of one emulated vCPU (Intel SDM vol. 3, "Advanced
// Programmable Interrupt Controller"): xAPIC register page, x2APIC MSRs,
// IA32_APIC_BASE, the APIC timer (one-shot, periodic, TSC-deadline), the
// IRR/ISR/TMR priority logic, IPIs through the ICR, LINT0/LINT1 and the
// INIT/SIPI/NMI events the CPU core acts on.
//
// How the CPU core uses it:
//  * MMIO: the register page is per CPU, so it is NOT on the shared MMIO bus.
//    Before dispatching a guest-physical access to the bus, the core checks
//    `mmio_enabled()` and whether the address lies in
//    [base_address(), base_address() + kMmioSize) of ITS OWN LocalApic, and
//    if so calls mmio_read/mmio_write (offset = address - base_address()).
//  * MSRs: RDMSR/WRMSR of any index with is_apic_msr(index) go to
//    msr_read/msr_write; an Error means the core injects #GP(0).
//    MOV to/from CR8 uses set_cr8()/cr8().
//  * Time: RDTSC = tsc_at_ns(clock.now_ns()) + tsc offset; whenever the guest
//    changes its TSC (WRMSR IA32_TSC / IA32_TSC_ADJUST), the core calls
//    set_tsc_offset() so TSC-deadline mode stays in step.
//  * Interrupts: at each instruction boundary where RFLAGS.IF = 1 and no
//    interrupt shadow is active, the core calls take_interrupt() and, if it
//    yields a vector, delivers that vector through the IDT. take_nmi() is
//    checked regardless of IF (the core blocks NMIs until IRET itself).
//    take_init() / waiting_for_sipi() / take_sipi() drive the INIT/SIPI
//    start-up protocol. HLT sleeps until the wake-up callback runs and
//    has_interrupt() (IF = 1) or has_nmi() / has_init() / has_sipi() holds.
//  * Wake-up: set_wakeup() installs a callback that is called, from any
//    thread and without any platform lock held, whenever a new interrupt or
//    event may have become deliverable. It must be cheap and must not block
//    (e.g. set a flag, notify a condition variable, kick the vCPU).
//
// Thread safety: all methods may be called from any thread. The LAPIC never
// calls out (IPIs, EOI broadcast to the IOAPIC, the PIC's INTA, the wake-up
// callback) while holding its own lock, so other components may call into it
// while holding theirs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "base/result.h"
#include "hv/emu/platform/apic_message.h"
#include "hv/emu/platform/platform_timers.h"
#include "hv/lapic_state.h"

namespace hostvisor::emu {

class ApicBus;

class LocalApic {
 public:
  static constexpr uint64_t kDefaultBase = 0xfee00000;
  static constexpr uint64_t kMmioSize = 0x1000;
  // Version 0x14 (integrated xAPIC), max LVT entry 5 (timer, thermal,
  // performance, LINT0, LINT1, error), no EOI-broadcast suppression.
  static constexpr uint32_t kVersion = 0x50014;

  static constexpr uint32_t kMsrApicBase = 0x1b;
  static constexpr uint32_t kMsrTscDeadline = 0x6e0;
  static constexpr uint32_t kMsrX2apicFirst = 0x800;
  static constexpr uint32_t kMsrX2apicLast = 0x8ff;
  // IA32_APIC_BASE bits.
  static constexpr uint64_t kApicBaseBsp = 1ull << 8;
  static constexpr uint64_t kApicBaseX2apic = 1ull << 10;
  static constexpr uint64_t kApicBaseEnable = 1ull << 11;

  // xAPIC register offsets in the MMIO page (x2APIC MSR = 0x800 + offset/16).
  enum Register : uint32_t {
    kRegId = 0x20,
    kRegVersion = 0x30,
    kRegTpr = 0x80,
    kRegApr = 0x90,
    kRegPpr = 0xa0,
    kRegEoi = 0xb0,
    kRegRrd = 0xc0,
    kRegLdr = 0xd0,
    kRegDfr = 0xe0,
    kRegSvr = 0xf0,
    kRegIsr = 0x100,  // 8 registers, 0x100-0x170
    kRegTmr = 0x180,  // 8 registers
    kRegIrr = 0x200,  // 8 registers
    kRegEsr = 0x280,
    kRegLvtCmci = 0x2f0,  // not implemented (reads 0, writes ignored)
    kRegIcrLow = 0x300,
    kRegIcrHigh = 0x310,
    kRegLvtTimer = 0x320,
    kRegLvtThermal = 0x330,
    kRegLvtPerf = 0x340,
    kRegLvtLint0 = 0x350,
    kRegLvtLint1 = 0x360,
    kRegLvtError = 0x370,
    kRegTimerInitial = 0x380,
    kRegTimerCurrent = 0x390,
    kRegTimerDivide = 0x3e0,
    kRegSelfIpi = 0x3f0,  // x2APIC only
  };

  // `apic_id` is the vCPU index; `bootstrap` marks the BSP (IA32_APIC_BASE
  // bit 8; an AP starts waiting for SIPI). The bus and timers must outlive
  // the LocalApic. Register the LocalApic with the bus (ApicBus::add) before
  // any vCPU runs.
  LocalApic(uint32_t apic_id, bool bootstrap, ApicBus& bus, PlatformTimers& timers);
  ~LocalApic();
  LocalApic(const LocalApic&) = delete;
  LocalApic& operator=(const LocalApic&) = delete;

  // Power-on / RESET state: base 0xFEE00000 enabled (xAPIC), software
  // disabled (SVR = 0xFF), all LVTs masked except, on the BSP, LINT0 which
  // is unmasked ExtINT (virtual-wire mode, as firmware leaves it and as KVM
  // resets it), so the 8259 PIC reaches the BSP without APIC programming.
  // The TSC offset is kept (the core owns the guest TSC).
  void reset();

  uint32_t id() const;  // the APIC id (not the xAPIC register encoding)
  bool is_bootstrap() const;

  // ---- Memory-mapped registers (xAPIC mode) ----
  uint64_t base_address() const;
  // True when globally enabled and in xAPIC mode: the core must then route
  // accesses to [base_address(), +kMmioSize) here (see the file comment).
  bool mmio_enabled() const;
  // Registers are 32 bits at 16-byte aligned offsets. Reads of 1, 2 or 4
  // bytes inside the low 4 bytes of a register are served; other reads see
  // zeros. Writes must be 4 bytes and 16-byte aligned; others are ignored.
  void mmio_read(uint64_t offset, std::span<uint8_t> data);
  void mmio_write(uint64_t offset, std::span<const uint8_t> data);

  // ---- MSRs ----
  static bool is_apic_msr(uint32_t index) {
    return index == kMsrApicBase || index == kMsrTscDeadline || (index >= kMsrX2apicFirst && index <= kMsrX2apicLast);
  }
  // IA32_APIC_BASE (0x1B), IA32_TSC_DEADLINE (0x6E0), and the x2APIC range
  // 0x800-0x8FF (only in x2APIC mode). An Error (kGuest) means #GP(0):
  // x2APIC MSRs in xAPIC mode, reserved/read-only registers, reserved bits,
  // and illegal IA32_APIC_BASE transitions (x2APIC -> xAPIC directly,
  // x2APIC enable while globally disabled).
  Result<uint64_t> msr_read(uint32_t index);
  Result<void> msr_write(uint32_t index, uint64_t value);

  // CR8 is TPR[7:4].
  uint8_t cr8() const;
  void set_cr8(uint8_t value);

  // Guest TSC = tsc_at_ns(now) + offset (mod 2^64), for TSC-deadline mode.
  void set_tsc_offset(uint64_t offset);
  uint64_t guest_tsc() const;

  // ---- Delivery to the CPU core ----
  // A maskable interrupt is ready: an IRR vector above the PPR (APIC enabled)
  // or an ExtINT request from the PIC (LINT0 in ExtINT mode, or the APIC
  // globally disabled so LINT0 acts as the processor's INTR pin).
  bool has_interrupt() const;
  // The highest-priority IRR vector whose priority class is above the PPR,
  // while the APIC is globally enabled (requests accepted before a software
  // disable are still delivered, as the SDM says). Does not include ExtINT.
  std::optional<uint8_t> pending_vector() const;
  // The core delivered `vector` (from pending_vector()): IRR -> ISR, PPR
  // rises. A vector that is not in the IRR is ignored.
  void acknowledge(uint8_t vector);
  // pending_vector() + acknowledge() as one step, after ExtINT: if an ExtINT
  // request is pending, performs the PIC's INTA cycle and returns its
  // vector (bypassing IRR/ISR, as the hardware does). nullopt if nothing.
  std::optional<uint8_t> take_interrupt();

  // Lock-free summary for the core's per-instruction check: false means no
  // INIT, SIPI, NMI or maskable interrupt is pending and the vCPU is not
  // waiting for SIPI, so the calls below can be skipped. It is updated
  // before the LAPIC's lock is released; a change racing with the check is
  // seen on the next check (and the wake-up callback runs for it).
  bool needs_attention() const;
  // The flag needs_attention() reads, for translated code to test inline.
  const std::atomic<bool>* attention_flag() const;
  // A word set to 1 (release) whenever needs_attention() becomes true, after
  // the flag: the vCPU's leave word (hv/emu/leave_word.h). nullptr: none.
  void set_attention_poke(std::atomic<uint32_t>* word);

  bool has_nmi() const;
  bool take_nmi();  // consumes one pending NMI
  // An INIT arrived. take_init() consumes it and has already put the LAPIC in
  // its INIT state (everything reset except the APIC id and IA32_APIC_BASE).
  // The core then resets the CPU registers (reset_system_registers()); the
  // BSP runs from the reset vector, an AP waits: waiting_for_sipi() is true.
  bool has_init() const;
  bool take_init();
  // An AP that has not been started (or was sent INIT) waits for a SIPI; it
  // must not execute. SIPIs that arrive while not waiting are dropped.
  bool waiting_for_sipi() const;
  bool has_sipi() const;
  // Consumes a SIPI: the core starts the AP in real mode at CS = vector << 8,
  // IP = 0 (CS base vector << 12). Clears waiting_for_sipi().
  std::optional<uint8_t> take_sipi();

  void set_wakeup(std::function<void()> wakeup);
  // The PIC's INTA cycle, used for ExtINT delivery (wired by EmuPlatform).
  void set_extint_source(std::function<uint8_t()> acknowledge);

  // ---- Inputs ----
  // A message from the APIC bus addressed to this LAPIC (ApicBus already
  // matched the destination).
  void accept(const ApicMessage& message);
  // LINT0 / LINT1 pin levels. LINT0 carries the 8259 PIC's INTR on vCPU 0.
  // In Fixed mode a rising edge sets the LVT's vector in the IRR (and its TMR
  // bit for a level-triggered LVT); NMI and INIT modes raise that event on
  // the rising edge; ExtINT mode makes has_interrupt() follow the level.
  void set_lint0(bool level);
  void set_lint1(bool level);

  // Destination matching for the bus: physical (id or broadcast) and logical
  // (flat / cluster through LDR and DFR in xAPIC mode, cluster in x2APIC).
  bool matches(uint32_t destination, bool logical) const;
  bool x2apic_mode() const;

  // Fires the APIC timer if it is due at `now_ns` (the PlatformTimers
  // callback; public for tests).
  void on_timer(uint64_t now_ns);

  // Snapshot state (hv/lapic_state.h): the timer is stored as time since
  // the count was loaded, so a restore on another clock base continues the
  // countdown. The TSC offset is not in it: the CPU core sets the TSC.
  using State = LocalApicState;
  State save() const;
  // Restores a state taken by save(). Values that came from the guest are
  // accepted as is (they were validated when written).
  void restore(const State& state);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hostvisor::emu
