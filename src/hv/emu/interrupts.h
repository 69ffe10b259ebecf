// Exception and interrupt delivery through the IVT (real mode) or the IDT
// (protected and long mode), with stack switches, IST, error codes, and the
// double-fault / triple-fault escalation.
#pragma once

#include <cstdint>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

enum class EventKind : uint8_t {
  kException,          // fault or trap raised by an instruction
  kExternal,           // interrupt from the interrupt controller
  kSoftware,           // INT n: the gate's DPL is checked
  kSoftwareException,  // INT3 / INTO: like INT n, but reported as an exception
  kIcebp,              // INT1
};

// Delivers one event; the saved RIP is `return_rip`. Returns false when the
// CPU shut down (triple fault). Faults during delivery escalate as the SDM's
// double-fault table says.
bool deliver_event(Cpu& cpu, uint8_t vector, EventKind kind, bool has_error, uint32_t error, uint64_t return_rip);

// Whether an event waits that the next instruction boundary would deliver
// (an interrupt with IF = 1, an unblocked NMI, INIT). Takes the LAPIC's lock:
// call it only after its lock-free needs_attention() said yes.
bool event_deliverable(const Cpu& cpu);

// IRET in every mode.
void do_iret(Cpu& cpu, unsigned opsize);

}  // namespace hostvisor::emu
