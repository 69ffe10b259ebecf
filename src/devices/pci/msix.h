// MSI-X: the capability in config space plus the vector table and pending
// bit array (PBA) that live inside one of the device's BARs. Delivery goes
// through InterruptController::signal_msi, or, when the machine offers an
// MsiRouter (KVM: irqfd on an MSI route), through one route per vector that
// is bound to the vector's message when the guest unmasks it and re-bound
// whenever the message changes. A vector that fires while masked (its own
// mask bit or the function mask) sets its pending bit instead and is
// delivered as soon as it is unmasked: masking is decided here, before a
// route fires, so routes never bypass it.
//
// Not thread-safe: the owning device serialises calls with its own lock.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/pci/msi_router.h"
#include "devices/pci/pci_config_space.h"
#include "hv/interrupts.h"

namespace hostvisor {

class Msix {
 public:
  static constexpr uint16_t kMaxVectors = 2048;
  static constexpr uint64_t kEntrySize = 16;

  // `table_offset` and `pba_offset` are offsets inside BAR `bar` (8-byte aligned).
  Msix(uint16_t vectors, uint8_t bar, uint32_t table_offset, uint32_t pba_offset);

  // Adds the capability to `config`; call once during set-up.
  Result<void> install(PciConfigSpace& config);
  void set_interrupt_controller(InterruptController* interrupts) { interrupts_ = interrupts; }
  // Delivers through routes of `router` where it can (nullptr: only through
  // the interrupt controller). Releases the routes of the previous router,
  // so call it with nullptr before that router goes away.
  void set_msi_router(MsiRouter* router);
  // How many vectors currently hold a route (for tests and statistics).
  size_t routed_vectors() const;

  // Call after every guest write to config space: picks up Enable and
  // Function Mask and delivers what became unmasked.
  void config_written(const PciConfigSpace& config);

  uint16_t vector_count() const { return static_cast<uint16_t>(entries_.size()); }
  uint8_t bar() const { return bar_; }
  uint64_t table_size() const { return entries_.size() * kEntrySize; }
  uint64_t pba_size() const { return ((entries_.size() + 63) / 64) * 8; }
  bool in_table(uint64_t offset, uint64_t length) const;
  bool in_pba(uint64_t offset, uint64_t length) const;

  // BAR accesses (offset relative to the BAR); any width, out-of-range bytes ignored.
  void table_read(uint64_t offset, std::span<uint8_t> data) const;
  void table_write(uint64_t offset, std::span<const uint8_t> data);
  void pba_read(uint64_t offset, std::span<uint8_t> data) const;

  bool enabled() const { return enabled_; }
  bool function_masked() const { return function_masked_; }
  bool vector_masked(uint16_t vector) const;
  bool pending(uint16_t vector) const;

  // Raises `vector`: delivers it, or marks it pending if masked. Returns false
  // if MSI-X is disabled or the vector does not exist (caller falls back or drops).
  bool signal(uint16_t vector);

  // Snapshot: the table and pending bits (Enable and Function Mask live in
  // config space; call config_written() after restoring that).
  struct State {
    struct Entry {
      uint32_t address_low = 0;
      uint32_t address_high = 0;
      uint32_t data = 0;
      uint32_t control = 1;
    };
    std::vector<Entry> entries;
    std::vector<bool> pending;
  };
  State save() const;
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

  // Power-on state: disabled, every vector masked, nothing pending.
  void reset(PciConfigSpace& config);

 private:
  using Entry = State::Entry;  // control bit 0: masked
  static constexpr uint16_t kControlEnable = 1u << 15;
  static constexpr uint16_t kControlFunctionMask = 1u << 14;

  uint32_t entry_dword(size_t index) const;
  void deliver(uint16_t vector);
  void deliver_unmasked_pending();
  bool deliverable(uint16_t vector) const;
  // Binds vector's route to its current message (creating the route if
  // needed); false if there is no router or the backend cannot route it.
  bool sync_route(uint16_t vector);
  void sync_unmasked_routes();

  std::vector<Entry> entries_;
  std::vector<bool> pending_;
  uint8_t bar_;
  uint32_t table_offset_;
  uint32_t pba_offset_;
  uint16_t cap_offset_ = 0;
  bool enabled_ = false;
  bool function_masked_ = false;
  InterruptController* interrupts_ = nullptr;

  // One per vector, bound to the message in `address`/`data` (valid while
  // `route` is set). `failed` remembers a message the router could not take,
  // so an exhausted backend costs one attempt per message, not per interrupt.
  struct VectorRoute {
    std::unique_ptr<MsiRoute> route;
    uint64_t address = 0;
    uint32_t data = 0;
    bool failed = false;
  };
  MsiRouter* router_ = nullptr;
  std::vector<VectorRoute> routes_;
};

}  // namespace hostvisor
