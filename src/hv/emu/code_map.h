// Which guest-physical pages hold decoded code, shared by all vCPUs of a VM.
// Each page has a generation number that decoded blocks remember; a write to
// a code page bumps it, so every vCPU's cached blocks of that page go stale
// at their next lookup (self- and cross-modifying code).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace hostvisor::emu {

class CodeMap {
 public:
  // Covers guest-physical addresses below `limit` (the end of the highest RAM region).
  explicit CodeMap(uint64_t limit = 0) { resize(limit); }

  void resize(uint64_t limit) {
    pages_ = (limit + 0xfff) >> 12;
    generation_ = std::make_unique<std::atomic<uint32_t>[]>(pages_);
    is_code_ = std::make_unique<std::atomic<uint8_t>[]>(pages_);
    for (uint64_t i = 0; i < pages_; ++i) {
      generation_[i].store(0, std::memory_order_relaxed);
      is_code_[i].store(0, std::memory_order_relaxed);
    }
  }

  bool covers(uint64_t phys) const { return (phys >> 12) < pages_; }

  uint32_t generation(uint64_t phys) const {
    uint64_t page = phys >> 12;
    return page < pages_ ? generation_[page].load(std::memory_order_acquire) : 0;
  }

  bool is_code(uint64_t phys) const {
    uint64_t page = phys >> 12;
    return page < pages_ && is_code_[page].load(std::memory_order_relaxed);
  }

  // A block was decoded from this page: writes to it must now take the slow
  // path. Bumps the epoch so vCPUs drop write TLB entries that skip the check.
  void mark_code(uint64_t phys) {
    uint64_t page = phys >> 12;
    if (page < pages_ && !is_code_[page].exchange(1, std::memory_order_acq_rel)) {
      epoch_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  // The page was written: blocks decoded from it are stale.
  void invalidate(uint64_t phys) {
    uint64_t page = phys >> 12;
    if (page < pages_) {
      is_code_[page].store(0, std::memory_order_relaxed);
      generation_[page].fetch_add(1, std::memory_order_acq_rel);
      writes_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  // Invalidates every code page in [phys, phys + length): for writes that bypass
  // the vCPUs (device DMA, loaders).
  void invalidate_range(uint64_t phys, uint64_t length) {
    for (uint64_t page = phys >> 12; page < pages_ && (page << 12) < phys + length; ++page) {
      if (is_code_[page].load(std::memory_order_relaxed)) invalidate(page << 12);
    }
  }

  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  // The epoch itself, for translated code, which compares it with the
  // vCPU's last seen value at every chained block entry (a plain load:
  // an acquire on x86).
  const std::atomic<uint64_t>* epoch_counter() const { return &epoch_; }

  // How many code-page invalidations there have been: while it is unchanged,
  // no decoded block anywhere went stale, so a vCPU may follow its block
  // links without checking each page's generation.
  uint64_t writes() const { return writes_.load(std::memory_order_acquire); }

 private:
  uint64_t pages_ = 0;
  std::unique_ptr<std::atomic<uint32_t>[]> generation_;
  std::unique_ptr<std::atomic<uint8_t>[]> is_code_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> writes_{0};
};

}  // namespace hostvisor::emu
