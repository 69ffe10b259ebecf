// The VM-wide interrupt controllers and timers in a form both backends read
// and write: the IOAPIC, the two 8259 PICs, the 8254 PIT with port 0x61, and
// the VM clock. The emu backend keeps these structs itself
// (hv/emu/platform/); the KVM backend converts its in-kernel chips
// (KVM_GET/SET_IRQCHIP, KVM_GET/SET_PIT2, KVM_GET/SET_CLOCK) to and from them.
//
// No field holds a host clock value: a PIT count is stored as input clocks
// elapsed since it was loaded, and the clock as the guest's own nanoseconds.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "base/result.h"
#include "base/state_codec.h"

namespace hostvisor {

struct IoApicState {
  static constexpr unsigned kPins = 24;
  uint8_t id = 0;      // bits 27:24 of the ID register
  uint8_t select = 0;  // IOREGSEL
  // Redirection entries; the delivery-status bit is never set (delivery is
  // instantaneous on both backends), remote IRR (bit 14) is kept.
  std::array<uint64_t, kPins> entries{};
  uint32_t pin_levels = 0;  // bit n = pin n asserted (logical level, whatever the polarity)

  bool operator==(const IoApicState&) const = default;
};

// One Intel 8259A.
struct PicChipState {
  uint8_t irr = 0;            // request register
  uint8_t isr = 0;            // in-service register
  uint8_t imr = 0;            // mask register
  uint8_t elcr = 0;           // level-triggered inputs (ports 0x4D0/0x4D1)
  uint8_t lines = 0;          // current input levels (edge detection)
  uint8_t vector_base = 0;    // ICW2 & 0xF8
  uint8_t priority_base = 0;  // lowest-priority IRQ + 1 (rotation), mod 8
  uint8_t init_step = 0;      // 0 = ready, 2-4 = expecting ICW2-ICW4
  bool icw4_needed = false;
  bool single = false;
  bool auto_eoi = false;
  bool rotate_on_auto_eoi = false;
  bool special_fully_nested = false;
  bool special_mask = false;
  bool read_isr = false;  // OCW3 RR/RIS: port reads give ISR (else IRR)
  bool poll = false;      // OCW3 poll command pending
  uint8_t cascade = 0;    // ICW3 as written

  bool operator==(const PicChipState&) const = default;
};

struct PicState {
  std::array<PicChipState, 2> chips{};  // master (IRQ 0-7), slave (IRQ 8-15)
  bool operator==(const PicState&) const = default;
};

// One 8254 counter.
struct PitChannelState {
  uint8_t mode = 0;    // 0-5
  uint8_t access = 3;  // 1 lobyte, 2 hibyte, 3 lobyte then hibyte
  bool bcd = false;
  bool gate = true;
  uint32_t count = 0x10000;      // reload value, 1-0x10000 (0 written = 65536)
  bool counting = false;         // a count is loaded and running
  bool armed = true;             // modes 1/5: waiting for a gate trigger
  uint64_t elapsed_ticks = 0;    // input clocks (1.193182 MHz) since the count was loaded/triggered
  bool write_high_next = false;  // lobyte/hibyte write flip-flop
  uint8_t write_low = 0;
  bool read_high_next = false;  // read flip-flop (unlatched reads)
  bool null_count = true;
  bool latched = false;
  uint16_t latched_value = 0;
  bool latched_high_next = false;  // latched two-byte read in progress
  bool status_latched = false;
  uint8_t status = 0;

  bool operator==(const PitChannelState&) const = default;
};

struct PitState {
  std::array<PitChannelState, 3> channels{};
  // Port 0x61 bits 0-3 (channel 2 gate, speaker data, parity/channel-check
  // disables). KVM's in-kernel PIT keeps only the gate (in channel 2).
  uint8_t port61 = 0;
  bool operator==(const PitState&) const = default;
};

struct IrqchipState {
  IoApicState io_apic;
  PicState pic;
  PitState pit;
  // The VM clock in nanoseconds: what the guest's monotonic time is made of.
  // KVM: kvmclock (KVM_GET/SET_CLOCK). emu: the platform clock every timer
  // and the TSC follow. A restore sets it, so time goes on from here with no
  // jump (and no flood of expired timers).
  uint64_t clock_ns = 0;
  // The VM's vCPUs: a restore needs the same number (one LAPIC each).
  uint32_t vcpu_count = 1;

  bool operator==(const IrqchipState&) const = default;
};

// A restore into a VM of `vcpu_count` vCPUs: fails (kInvalidArgument) with a
// message when the state's VM had another number.
Result<void> check_irqchip_vcpu_count(const IrqchipState& state, unsigned vcpu_count);

inline constexpr uint32_t kIrqchipStateVersion = 1;

void encode_irqchip_state(StateWriter& out, const IrqchipState& state);
// Refuses (kCorrupt) a truncated payload, trailing bytes, a value out of its
// range, and (kUnsupported) a version this build does not know.
Result<IrqchipState> decode_irqchip_state(std::span<const uint8_t> payload, uint32_t version);

}  // namespace hostvisor
