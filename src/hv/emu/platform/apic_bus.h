// The virtual APIC bus: routes ApicMessages (from IOAPIC redirection
// entries, MSIs and local APIC ICR writes) to the local APICs they address,
// and carries EOI broadcasts for level-triggered vectors back to the IOAPIC.
//
// Routing: physical mode matches the APIC id (0xFF in xAPIC / 0xFFFFFFFF in
// x2APIC form = broadcast); logical mode matches each LAPIC's LDR through its
// DFR model (flat or cluster), or the x2APIC cluster format. Lowest-priority
// delivery goes to the lowest-numbered matching LAPIC (no priority
// arbitration; guests cannot tell the difference beyond load balance).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "base/result.h"
#include "hv/emu/platform/apic_message.h"

namespace hostvisor::emu {

class LocalApic;
class IoApic;

class ApicBus {
 public:
  ApicBus() = default;
  ApicBus(const ApicBus&) = delete;
  ApicBus& operator=(const ApicBus&) = delete;

  // Set-up, before any vCPU runs or any interrupt is raised (not locked):
  // LAPICs in vCPU order, and the IOAPIC that receives EOI broadcasts.
  void add(LocalApic& lapic);
  void set_io_apic(IoApic* io_apic) { io_apic_ = io_apic; }

  size_t size() const { return lapics_.size(); }
  LocalApic& local_apic(size_t index) const { return *lapics_.at(index); }

  // Delivers `message` to every LAPIC it addresses. `source` is the sending
  // LAPIC for ICR messages (needed for the self / all-excluding-self
  // shorthands), nullptr for the IOAPIC and MSIs. Returns how many LAPICs
  // accepted it (0 = nobody matched; the message is lost, as on hardware).
  size_t deliver(const ApicMessage& message, const LocalApic* source = nullptr);

  // Decodes an MSI (see msi.h) and delivers it. Fails on a malformed
  // address/data pair (the write is then dropped by the caller).
  Result<size_t> signal_msi(uint64_t address, uint32_t data);

  // A LAPIC's EOI of a level-triggered vector: the IOAPIC clears remote IRR
  // of the entries with that vector.
  void broadcast_eoi(uint8_t vector);

 private:
  std::vector<LocalApic*> lapics_;
  IoApic* io_apic_ = nullptr;
};

}  // namespace hostvisor::emu
