#include "hv/emu/platform/apic_bus.h"

#include "hv/emu/platform/io_apic.h"
#include "hv/emu/platform/local_apic.h"
#include "hv/emu/platform/msi.h"

namespace hostvisor::emu {

void ApicBus::add(LocalApic& lapic) { lapics_.push_back(&lapic); }

size_t ApicBus::deliver(const ApicMessage& message, const LocalApic* source) {
  // A level-triggered message with level 0 is only meaningful for INIT (the
  // de-assert, which does nothing) and, from MSI, carries no interrupt.
  if (message.level_triggered && !message.assert_level && message.mode != DeliveryMode::kFixed &&
      message.mode != DeliveryMode::kLowestPriority)
    return 0;

  auto selected = [&](LocalApic* lapic) {
    switch (message.shorthand) {
      case DestinationShorthand::kSelf: return lapic == source;
      case DestinationShorthand::kAllIncludingSelf: return true;
      case DestinationShorthand::kAllExcludingSelf: return lapic != source;
      case DestinationShorthand::kNone: break;
    }
    return lapic->matches(message.destination, message.logical);
  };

  if (message.mode == DeliveryMode::kLowestPriority) {
    // Lowest-numbered target; ICR shorthands "self" and "all" are not
    // allowed with lowest priority on real hardware, treat them the same.
    for (LocalApic* lapic : lapics_) {
      if (selected(lapic)) {
        ApicMessage fixed = message;
        fixed.mode = DeliveryMode::kFixed;
        lapic->accept(fixed);
        return 1;
      }
    }
    return 0;
  }
  size_t accepted = 0;
  for (LocalApic* lapic : lapics_) {
    if (selected(lapic)) {
      lapic->accept(message);
      ++accepted;
    }
  }
  return accepted;
}

Result<size_t> ApicBus::signal_msi(uint64_t address, uint32_t data) {
  auto message = decode_msi(address, data);
  if (!message) return std::move(message).error();
  return deliver(*message);
}

void ApicBus::broadcast_eoi(uint8_t vector) {
  if (io_apic_) io_apic_->eoi(vector);
}

}  // namespace hostvisor::emu
