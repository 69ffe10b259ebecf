// The Virtual Machine Generation ID (Microsoft's "Virtual Machine Generation
// ID" spec): 16 random bytes in guest memory, at the address the DSDT's VGEN
// device returns from ADDR (arch/x86_64/acpi/acpi_tables.h,
// VmGenIdDescription). A guest compares it to notice that it runs as a copy
// of itself (Linux's vmgenid driver then reseeds its RNG), so it is fresh at
// first boot, kept across save and restore, and new in every clone, with a
// notification (a GPE whose _Exx method does Notify(VGEN, 0x80)) telling the
// guest to look again.
#pragma once

#include <array>
#include <cstdint>
#include <functional>

#include "base/result.h"
#include "base/state_codec.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class VmGenerationId {
 public:
  using Id = std::array<uint8_t, 16>;
  static constexpr uint64_t kAlignment = 8;  // the spec's: one 8-byte aligned 128-bit value

  // `notify` raises the guest's notification (the PM block's GPE). The
  // address must be inside `memory`, 8-byte aligned; the Machine picks one
  // in an e820-reserved page the guest does not use.
  VmGenerationId(GuestMemory& memory, uint64_t address, std::function<void()> notify);

  // A fresh random ID written to guest memory, without a notification: the
  // first boot.
  Result<void> generate();
  // A new random ID, then the notification: the VM is a clone.
  Result<void> change();

  const Id& id() const { return id_; }
  uint64_t address() const { return address_; }

  struct State {
    uint64_t address = 0;  // where the guest's DSDT says the ID is
    Id id{};
  };
  State save() const { return {address_, id_}; }
  // Takes the saved address (the restored guest's DSDT names it, whatever
  // this hostvisor would pick) and writes the saved ID there again. Fails
  // for an address outside guest RAM or misaligned.
  Result<void> restore(const State& state);
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  Result<void> write_id();

  GuestMemory& memory_;
  uint64_t address_;
  std::function<void()> notify_;
  Id id_{};
};

}  // namespace hostvisor
