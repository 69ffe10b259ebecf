// A second-level soft TLB: what a page walk found for a 4 KiB page, kept
// for the first-level TLB's misses (cpu.h), as a CPU's STLB backs its L1
// TLBs. Direct-mapped, 8192 entries (256 KiB): a guest touching more pages
// than the 256-entry first level holds (the tlb benchmark's 8192, a
// process's working set) refills from here instead of reading four levels
// of page tables.
//
// - Only 4 KiB pages: an INVLPG then drops one entry at most (a large
//   page's slices would each need their own; its walks are shorter anyway).
// - An entry keeps the walk's permissions, not a decision: the lookup
//   decides for the access at hand with the CR0.WP and EFER.NXE of now, and
//   anything it would refuse (a fault: the walk raises it with its error
//   code) or a write to a page whose dirty bit the walk has not seen set
//   goes to the walk, which sets A/D as the access does. The walk's A bits
//   were set when the entry was made, as a CPU's TLB fill sets them.
// - Flushes are O(1): an entry is valid only at the epoch it was made in,
//   one epoch for global entries (moved by full flushes) and one for the
//   rest (moved by every flush). Wrapping around clears the array.
// - A copy of a Tlb starts with none of its own (Tlb's copy), allocated on
//   first use.
#pragma once

#include <cstdint>

namespace hostvisor::emu {

struct SecondLevelEntry {
  uint64_t tag = 0;   // linear page number + 1 (0: never filled)
  uint64_t phys = 0;  // guest-physical page address
  uint32_t epoch = 0;
  bool global = false;
  bool writable = false;  // R/W on every level
  bool user = false;      // U/S on every level
  bool no_exec = false;   // XD on some level
  bool dirty = false;     // the leaf's D bit was set
};

class SecondLevelTlb {
 public:
  static constexpr unsigned kBits = 13;
  static constexpr unsigned kSize = 1u << kBits;

  SecondLevelTlb() = default;
  SecondLevelTlb(const SecondLevelTlb&) {}
  SecondLevelTlb& operator=(const SecondLevelTlb&) {
    flush();
    return *this;
  }
  ~SecondLevelTlb() { delete[] entries_; }

  // Statistics (HOSTVISOR_EMU_STATS): first-level misses it served, and
  // page walks (the misses it did not serve, with paging on).
  uint64_t hits() const { return hits_; }
  uint64_t walks() const { return walks_; }
  void count(bool hit) { ++(hit ? hits_ : walks_); }

  // The valid entry for `linear`'s page, or nullptr.
  const SecondLevelEntry* find(uint64_t linear) const {
    if (!entries_) return nullptr;
    const SecondLevelEntry& e = entries_[(linear >> 12) & (kSize - 1)];
    if (e.tag != (linear >> 12) + 1 || e.epoch != (e.global ? global_epoch_ : epoch_)) return nullptr;
    return &e;
  }
  void insert(uint64_t linear, const SecondLevelEntry& made) {
    if (!entries_) entries_ = new SecondLevelEntry[kSize]{};
    SecondLevelEntry& e = entries_[(linear >> 12) & (kSize - 1)];
    e = made;
    e.tag = (linear >> 12) + 1;
    e.epoch = made.global ? global_epoch_ : epoch_;
  }
  void flush() {
    next(global_epoch_);
    next(epoch_);
  }
  void flush_non_global() { next(epoch_); }
  void flush_page(uint64_t linear) {
    if (!entries_) return;
    SecondLevelEntry& e = entries_[(linear >> 12) & (kSize - 1)];
    if (e.tag == (linear >> 12) + 1) e.tag = 0;
  }

 private:
  void next(uint32_t& epoch) {
    if (++epoch != 0 || !entries_) return;
    // Wrapped: an entry of 2^32 flushes ago would look valid again.
    for (unsigned i = 0; i < kSize; ++i) entries_[i].tag = 0;
  }

  // A plain pointer, not a unique_ptr: Cpu stays standard-layout (the
  // translator takes offsetof its fields).
  SecondLevelEntry* entries_ = nullptr;
  uint32_t global_epoch_ = 1, epoch_ = 1;
  uint64_t hits_ = 0, walks_ = 0;
};

}  // namespace hostvisor::emu
