// Which guest-physical pages hold decoded code, shared by all vCPUs of a VM.
// Each page has a generation number that decoded blocks remember; a write to
// a code page bumps it, so every vCPU's cached blocks of that page go stale
// at their next lookup (self- and cross-modifying code).
//
// Cross-modifying code. A write TLB entry exists only for a page that was not
// code when it was made, and a store through it skips the code check. So a
// page that becomes code bumps the epoch, and every vCPU drops its write
// entries at its next block boundary, then acknowledges the epoch in its slot
// (attach()). Until every other running vCPU has acknowledged the epoch a
// block was decoded under, one of them may still be inside a block storing
// into the page through an old entry: such a block is provisional (it keeps
// a copy of its bytes, which are compared with memory once the acknowledgements
// are in; see Interpreter::block_at_rip). A vCPU that is not running (outside
// its run loop, or asleep in HLT) counts as acknowledged: it stores nothing.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

namespace hostvisor::emu {

class CodeMap {
 public:
  // Covers guest-physical addresses below `limit` (the end of the highest RAM region).
  explicit CodeMap(uint64_t limit = 0) { resize(limit); }

  void resize(uint64_t limit) {
    pages_ = (limit + 0xfff) >> 12;
    generation_ = Generations(pages_);
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

  // The word generation() reads, for translated code that compares it at
  // every chained entry; nullptr beyond the map (pages it never tracks).
  const std::atomic<uint32_t>* generation_word(uint64_t phys) const {
    const uint64_t page = phys >> 12;
    return page < pages_ ? &generation_[page] : nullptr;
  }

  bool is_code(uint64_t phys) const {
    uint64_t page = phys >> 12;
    return page < pages_ && is_code_[page].load(std::memory_order_relaxed);
  }

  // A block is about to be decoded from this page: writes to it must now
  // take the slow path. Bumps the epoch so vCPUs drop write TLB entries that
  // skip the check (see all_acknowledged() for when they have).
  void mark_code(uint64_t phys) {
    uint64_t page = phys >> 12;
    if (page < pages_ && !is_code_[page].exchange(1, std::memory_order_acq_rel)) {
      epoch_.fetch_add(1, std::memory_order_acq_rel);
      // Then every vCPU's leave word, so its translated code returns to
      // the run loop (which drops its write TLB entries).
      const unsigned used = leave_used_.load(std::memory_order_acquire);
      for (unsigned i = 0; i < used; ++i)
        if (std::atomic<uint32_t>* word = leave_[i].load(std::memory_order_acquire))
          word->store(1, std::memory_order_release);
    }
  }

  // A vCPU's leave word (hv/emu/leave_word.h), set from now on whenever the
  // epoch moves; with a slot or without (a host thread may decode for it in
  // tests). Each vCPU's run loop adds its own, once. Words are never freed,
  // so one of a vCPU gone is harmless. False when the list is full.
  bool add_leave_word(std::atomic<uint32_t>* word) {
    const unsigned used = leave_used_.load(std::memory_order_acquire);
    for (unsigned i = 0; i < used; ++i)
      if (leave_[i].load(std::memory_order_relaxed) == word) return true;
    std::lock_guard<std::mutex> lock(leave_mutex_);
    const unsigned now = leave_used_.load(std::memory_order_relaxed);
    for (unsigned i = used; i < now; ++i)
      if (leave_[i].load(std::memory_order_relaxed) == word) return true;
    if (now == kMaxLeaveWords) return false;
    leave_[now].store(word, std::memory_order_release);
    // Published before the epoch is read again by the caller (seq_cst both).
    leave_used_.store(now + 1, std::memory_order_seq_cst);
    return true;
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
    // The bytes were stored before this call; the fence orders them before
    // the is_code loads below (see the store path in mmu.cpp).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    for (uint64_t page = phys >> 12; page < pages_ && (page << 12) < phys + length; ++page) {
      if (is_code_[page].load(std::memory_order_relaxed)) invalidate(page << 12);
    }
  }

  // Sequentially consistent, as is a slot's store in running(): either the
  // decoding vCPU sees the slot running, or the vCPU entering its run loop
  // sees the epoch move and drops its write entries first.
  uint64_t epoch() const { return epoch_.load(std::memory_order_seq_cst); }
  // The epoch itself, for translated code, which compares it with the
  // vCPU's last seen value at every chained block entry (a plain load:
  // an acquire on x86).
  const std::atomic<uint64_t>* epoch_counter() const { return &epoch_; }

  // How many code-page invalidations there have been: while it is unchanged,
  // no decoded block anywhere went stale, so a vCPU may follow its block
  // links without checking each page's generation.
  uint64_t writes() const { return writes_.load(std::memory_order_acquire); }

  // The vCPUs whose acknowledgements count: slot `index` (the vCPU index,
  // < kMaxSlots) starts as not running. A CPU without a slot (the emulator's
  // single-CPU tests) is never waited for.
  static constexpr unsigned kMaxSlots = 256;
  static constexpr uint64_t kNotRunning = ~0ull;
  bool attach(unsigned index) {
    if (index >= kMaxSlots) return false;
    acknowledged_[index].store(kNotRunning, std::memory_order_seq_cst);
    unsigned used = slots_.load(std::memory_order_relaxed);
    while (used <= index && !slots_.compare_exchange_weak(used, index + 1, std::memory_order_acq_rel)) {
    }
    return true;
  }
  // The vCPU enters its run loop with write entries made since it saw
  // `seen`; it loads epoch() right after and drops them if that moved.
  void running(unsigned slot, uint64_t seen) { acknowledged_[slot].store(seen, std::memory_order_seq_cst); }
  // It dropped its write entries at `epoch`.
  void acknowledge(unsigned slot, uint64_t epoch) { acknowledged_[slot].store(epoch, std::memory_order_release); }
  // It stores nothing until running() again (left the run loop, or sleeps).
  void not_running(unsigned slot) { acknowledged_[slot].store(kNotRunning, std::memory_order_release); }
  // Whether every attached vCPU but `self` (kMaxSlots: none) has dropped the
  // write entries it had before `epoch`: then a page that was code at
  // `epoch` takes only the slow, invalidating path from anyone's stores.
  // One load per other vCPU; true at once with a single vCPU.
  bool all_acknowledged(uint64_t epoch, unsigned self) const {
    const unsigned used = slots_.load(std::memory_order_acquire);
    for (unsigned i = 0; i < used; ++i) {
      if (i != self && acknowledged_[i].load(std::memory_order_seq_cst) < epoch) return false;
    }
    return true;
  }

 private:
  uint64_t pages_ = 0;
  // The generation words, in the low 2 GiB when they can be (MAP_32BIT):
  // translated code then compares one at an absolute address with no
  // register borrowed (see the chain entry in jit/translator.cpp).
  class Generations {
   public:
    Generations() = default;
    explicit Generations(uint64_t n) : n_(n) {
      if (!n) return;
      void* m = mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
      if (m != MAP_FAILED) {
        mapped_ = true;
        words_ = static_cast<std::atomic<uint32_t>*>(m);  // zero-filled
      } else {
        words_ = new std::atomic<uint32_t>[n];
      }
    }
    Generations(Generations&& o) noexcept { *this = std::move(o); }
    Generations& operator=(Generations&& o) noexcept {
      if (this != &o) {
        release();
        n_ = std::exchange(o.n_, 0);
        words_ = std::exchange(o.words_, nullptr);
        mapped_ = std::exchange(o.mapped_, false);
      }
      return *this;
    }
    ~Generations() { release(); }
    std::atomic<uint32_t>& operator[](uint64_t i) const { return words_[i]; }

   private:
    size_t bytes() const { return static_cast<size_t>(n_) * sizeof(std::atomic<uint32_t>); }
    void release() {
      if (mapped_) {
        munmap(words_, bytes());
      } else {
        delete[] words_;
      }
      words_ = nullptr;
    }
    uint64_t n_ = 0;
    std::atomic<uint32_t>* words_ = nullptr;
    bool mapped_ = false;
  };
  Generations generation_;
  std::unique_ptr<std::atomic<uint8_t>[]> is_code_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> writes_{0};
  std::atomic<unsigned> slots_{0};
  std::atomic<uint64_t> acknowledged_[kMaxSlots] = {};
  static constexpr unsigned kMaxLeaveWords = kMaxSlots + 64;
  std::mutex leave_mutex_;
  std::atomic<unsigned> leave_used_{0};
  std::atomic<std::atomic<uint32_t>*> leave_[kMaxLeaveWords] = {};
};

}  // namespace hostvisor::emu
