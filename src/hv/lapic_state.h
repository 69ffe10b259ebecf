// The local APIC's state in a form both backends read and write: the
// architectural registers (Intel SDM vol. 3, "Advanced Programmable Interrupt
// Controller"), the timer, and the INIT/SIPI/NMI events waiting for the CPU.
// The emu backend's LocalApic keeps exactly this; the KVM backend converts
// its 1 KiB register page (KVM_GET/SET_LAPIC) to and from it.
//
// Time is never a host clock value: the one-shot/periodic timer is stored as
// the time elapsed since its count was loaded, so a restore on another clock
// base (another process, another backend) continues the countdown; the
// TSC-deadline timer is stored as its deadline in guest TSC ticks.
#pragma once

#include <array>
#include <cstdint>

#include "base/state_codec.h"

namespace hostvisor {

struct LocalApicState {
  // Indices into `lvt`.
  enum Lvt : unsigned { kLvtTimer = 0, kLvtThermal, kLvtPerf, kLvtLint0, kLvtLint1, kLvtError, kLvtCount };

  uint64_t apic_base = 0xfee00000 | (1ull << 11);  // IA32_APIC_BASE
  uint32_t id = 0;                                 // APIC id
  uint32_t tpr = 0;
  uint32_t ldr = 0;
  uint32_t dfr = 0xffffffff;
  uint32_t svr = 0xff;
  uint32_t esr = 0;          // visible ESR (latched by a write)
  uint32_t esr_pending = 0;  // errors since the last ESR write
  uint32_t icr_low = 0;
  uint32_t icr_high = 0;
  std::array<uint32_t, kLvtCount> lvt{};  // timer, thermal, perf, LINT0, LINT1, error
  uint32_t timer_initial = 0;
  uint32_t timer_divide = 0;      // divide configuration register value
  uint64_t timer_elapsed_ns = 0;  // since the count was (re)loaded
  bool timer_running = false;     // one-shot/periodic countdown active
  uint64_t tsc_deadline = 0;      // IA32_TSC_DEADLINE in guest TSC ticks; 0 = disarmed
  std::array<uint32_t, 8> irr{}, isr{}, tmr{};
  bool nmi_pending = false;
  bool init_pending = false;
  bool waiting_for_sipi = false;  // an AP not yet started (or sent INIT)
  bool sipi_pending = false;
  uint8_t sipi_vector = 0;
  bool extint_pending = false;  // ExtINT message from the IOAPIC
  bool lint0_level = false;
  bool lint1_level = false;

  bool operator==(const LocalApicState&) const = default;
};

void encode_local_apic_state(StateWriter& out, const LocalApicState& state);
// Reads one LocalApicState; range errors go to `in` (checked by its finish()).
LocalApicState decode_local_apic_state(StateReader& in);

}  // namespace hostvisor
