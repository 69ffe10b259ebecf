// An interrupt message on the (virtual) APIC bus: what an IOAPIC redirection
// entry, an MSI write or a local APIC's ICR sends to local APICs.
#pragma once

#include <cstdint>

namespace hostvisor::emu {

// Delivery modes, with the encoding shared by the ICR, the IOAPIC
// redirection entries and MSI data (bits 10:8).
enum class DeliveryMode : uint8_t {
  kFixed = 0,
  kLowestPriority = 1,  // delivered to the lowest-numbered matching APIC
  kSmi = 2,             // accepted and ignored (no SMM)
  kNmi = 4,
  kInit = 5,
  kStartup = 6,  // SIPI; ICR only
  kExtInt = 7,   // the target asks the 8259 PIC for the vector
};

// ICR destination shorthand (bits 19:18).
enum class DestinationShorthand : uint8_t {
  kNone = 0,
  kSelf = 1,
  kAllIncludingSelf = 2,
  kAllExcludingSelf = 3,
};

// xAPIC broadcast destination (physical mode), and the x2APIC one.
constexpr uint32_t kXapicBroadcast = 0xff;
constexpr uint32_t kX2apicBroadcast = 0xffffffff;

struct ApicMessage {
  // Physical: an APIC id. Logical: a bit mask / cluster address that each
  // local APIC matches against its LDR and DFR. 8 bits except from an
  // x2APIC-mode ICR (32 bits).
  uint32_t destination = 0;
  bool logical = false;
  DeliveryMode mode = DeliveryMode::kFixed;
  uint8_t vector = 0;
  bool level_triggered = false;  // sets the target's TMR bit: its EOI is broadcast
  // Level of an ICR INIT message; an INIT with level 0 and level trigger is
  // the obsolete "INIT level de-assert" and does nothing.
  bool assert_level = true;
  DestinationShorthand shorthand = DestinationShorthand::kNone;
};

}  // namespace hostvisor::emu
