// The I/O APIC (Intel 82093AA): 24 input pins, each with a redirection entry
// that turns an edge or level on the pin into an ApicMessage on the ApicBus.
//
// MMIO at 0xFEC00000: IOREGSEL (offset 0x00, 8 bits used) selects a register
// that IOWIN (offset 0x10, 32 bits) reads or writes: 0x00 ID (bits 27:24),
// 0x01 version (0x170011: version 0x11, max redirection entry 23), 0x02
// arbitration id, 0x10 + 2n / 0x11 + 2n redirection entry n low / high.
//
// Pin levels are logical assertion levels (true = the device requests an
// interrupt), whatever the polarity bit says: the polarity bit is stored for
// the guest to read back, and the firmware tables may describe any polarity.
// (This is what KVM's in-kernel IOAPIC does too.)
//
// Edge-triggered pins deliver on each rising edge while unmasked (an edge
// while masked is lost). Level-triggered pins deliver while asserted,
// unmasked and remote IRR clear, then set remote IRR until a LAPIC's EOI of
// that vector; if the pin is still asserted then, it delivers again.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "hv/irqchip_state.h"

namespace hostvisor::emu {

class ApicBus;

class IoApic {
 public:
  static constexpr uint64_t kDefaultBase = 0xfec00000;
  static constexpr uint64_t kMmioSize = 0x1000;
  static constexpr unsigned kPins = 24;
  static constexpr uint32_t kVersion = 0x170011;
  static constexpr uint8_t kRegSelect = 0x00;  // IOREGSEL offset
  static constexpr uint8_t kRegWindow = 0x10;  // IOWIN offset
  // Redirection entry bits.
  static constexpr uint64_t kEntryDeliveryStatus = 1ull << 12;  // read-only
  static constexpr uint64_t kEntryActiveLow = 1ull << 13;
  static constexpr uint64_t kEntryRemoteIrr = 1ull << 14;  // read-only
  static constexpr uint64_t kEntryLevel = 1ull << 15;
  static constexpr uint64_t kEntryMasked = 1ull << 16;

  // `id` is the IOAPIC id the firmware tables (MADT) advertise.
  explicit IoApic(ApicBus& bus, uint8_t id = 0);
  ~IoApic();
  IoApic(const IoApic&) = delete;
  IoApic& operator=(const IoApic&) = delete;

  void reset();  // all entries masked, edge, vector 0; id kept

  // IOREGSEL accepts 1-4 byte writes at offset 0 (low byte used); IOWIN
  // accepts 4-byte accesses at offset 0x10. Everything else reads as zeros
  // and ignores writes.
  void mmio_read(uint64_t offset, std::span<uint8_t> data);
  void mmio_write(uint64_t offset, std::span<const uint8_t> data);

  // Drives input pin `pin` (0-23; others are ignored).
  void set_irq(unsigned pin, bool level);
  // EOI broadcast from a LAPIC (through ApicBus::broadcast_eoi).
  void eoi(uint8_t vector);

  // For tests and debugging: the 64-bit redirection entry of `pin`
  // (0 for pins out of range).
  uint64_t redirection_entry(unsigned pin) const;

  using State = IoApicState;  // hv/irqchip_state.h
  State save() const;
  void restore(const State& state);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hostvisor::emu
