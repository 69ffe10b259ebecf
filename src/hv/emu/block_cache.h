// Decoded basic blocks, cached by the guest-physical address of their first
// byte and the decoding mode. A block remembers the generation of the code
// page(s) it came from and is dropped when a write bumped it (CodeMap).
#pragma once

#include <bit>
#include <cstdint>
#include <memory>
#include <vector>

#include "hv/emu/decoder.h"

namespace hostvisor::emu {

struct Block;

// A remembered successor: the block that ran after this one when RIP was
// `rip`, valid while the CPU mode, CS base and `stamp` are unchanged. The
// stamp is the sum of counters that only grow (the TLB epoch, the cache
// generation and the CodeMap's invalidation count), so an equal sum means
// none moved: the translation, the block's memory and its code still hold.
struct BlockLink {
  uint64_t rip = ~0ull;
  Block* block = nullptr;
  uint64_t stamp = 0;
  uint64_t cs_base = 0;
  uint64_t mode = 0;  // code size, real mode and CPL
};

struct Block {
  uint64_t key = 0;
  uint64_t phys = 0;         // first byte
  uint64_t second_page = 0;  // guest-physical page of a final instruction that crosses a page
  uint32_t generation = 0;
  uint32_t second_generation = 0;
  bool crosses_page = false;
  std::vector<Insn> insns;
  BlockLink links[2];
  uint8_t next_link = 0;
  // Decoded while another running vCPU had not yet acknowledged the CodeMap
  // epoch `confirm_epoch` (it may still store into the page through a write
  // entry made while the page was data): the bytes it was decoded from,
  // compared with memory at every lookup until every vCPU has acknowledged.
  // Until then it is neither linked nor translated, so every entry looks it
  // up (Interpreter::block_at_rip).
  bool provisional = false;
  uint64_t confirm_epoch = 0;
  std::vector<uint8_t> decoded_bytes;  // from `phys`, then from `second_page`'s start
  // The translating tier (jit/translator.h): entries counted until the
  // block is hot, then its translation (the leading translatable
  // instructions, and a final direct branch when all before it are), valid
  // while the code cache's generation is `native_generation`.
  uint32_t uses = 0;
  uint16_t native_insns = 0;              // instructions the translation runs to its end
  bool native_user = false;               // translated for CPL 3 (its soft-TLB checks use the user entries)
  uint8_t native_page_entry = 0;          // native_chain + this: the entry from an exit in the same page
  uint64_t native_rip = 0;                // RIP it was translated at (RIP-relative operands and exits are constants)
  const uint8_t* native = nullptr;        // entry from the run loop
  const uint8_t* native_chain = nullptr;  // entry from another translation's exit
  uint64_t native_generation = ~0ull;
};

class BlockCache {
 public:
  static constexpr size_t kMaxBlocks = 1u << 16;  // then the cache starts over (bounded memory)

  static uint64_t key(uint64_t phys, unsigned code_size, bool real) {
    return phys | (static_cast<uint64_t>(code_size | (real ? 0x10 : 0)) << 56);
  }

  Block* find(uint64_t key) const {
    for (size_t i = home(key);; i = (i + 1) & mask()) {
      const Slot& s = slots_[i];
      if (!s.block) return nullptr;
      if (s.key == key) return s.block.get();
    }
  }

  Block* insert(std::unique_ptr<Block> block) {
    if (size_ >= kMaxBlocks) clear();
    if (2 * (size_ + 1) > slots_.size()) grow();
    Block* b = block.get();
    size_t i = home(b->key);
    while (slots_[i].block && slots_[i].key != b->key) i = (i + 1) & mask();
    if (slots_[i].block) {
      ++generation_;  // the block this key had is freed
    } else {
      ++size_;
    }
    slots_[i] = Slot{b->key, std::move(block)};
    if (size_ > peak_) peak_ = size_;
    return b;
  }

  // Drops a stale block. Never called while it runs.
  void erase(uint64_t key) {
    take(key);
    ++generation_;
  }

  // Drops a block whose code page was written since it was decoded. Every
  // link to it is void already (the write moved the CodeMap's count, part
  // of each link's stamp), so it is kept, not freed, until kMaxRetired pile
  // up: then the generation moves once for all of them. Moving it at every
  // rewritten page voided every link of the vCPU 16K times in a Linux boot.
  void retire(uint64_t key) {
    std::unique_ptr<Block> b = take(key);
    if (!b) return;
    retired_.push_back(std::move(b));
    if (retired_.size() >= kMaxRetired) {
      ++generation_;
      retired_.clear();
    }
  }

  void clear() {
    ++generation_;
    slots_ = std::vector<Slot>(kFirstSlots);
    size_ = 0;
    retired_.clear();
  }

  size_t size() const { return size_; }
  size_t peak() const { return peak_; }  // the most blocks it held at once
  // Changes whenever a block may have been freed, voiding BlockLinks.
  uint64_t generation() const { return generation_; }

 private:
  // Open addressing with linear probing, at most half full: a lookup reads
  // one slot (key and block side by side) where a node-based map read a
  // bucket, then a node; perf had that walk at 5% of a Linux boot. The
  // table doubles as blocks come (16 bytes a slot: 2 MiB at kMaxBlocks).
  struct Slot {
    uint64_t key = 0;
    std::unique_ptr<Block> block;  // null: empty
  };
  static constexpr size_t kFirstSlots = 4096;
  static constexpr size_t kMaxRetired = 256;

  size_t mask() const { return slots_.size() - 1; }
  size_t home(uint64_t key) const {
    // Fibonacci hashing: the top bits of the product mix every key bit.
    return static_cast<size_t>((key * 0x9e3779b97f4a7c15ull) >> (64 - std::countr_zero(slots_.size())));
  }

  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    for (Slot& s : old) {
      if (!s.block) continue;
      size_t i = home(s.key);
      while (slots_[i].block) i = (i + 1) & mask();
      slots_[i] = std::move(s);
    }
  }

  // Removes `key`'s block and returns it; the slots after it that would
  // now be unreachable move back into the hole (no tombstones).
  std::unique_ptr<Block> take(uint64_t key) {
    size_t hole = home(key);
    while (slots_[hole].block && slots_[hole].key != key) hole = (hole + 1) & mask();
    if (!slots_[hole].block) return nullptr;
    std::unique_ptr<Block> taken = std::move(slots_[hole].block);
    --size_;
    for (size_t j = (hole + 1) & mask(); slots_[j].block; j = (j + 1) & mask()) {
      // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
      const size_t h = home(slots_[j].key);
      const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (stays) continue;
      slots_[hole] = std::move(slots_[j]);
      hole = j;
    }
    slots_[hole] = Slot{};
    return taken;
  }

  std::vector<Slot> slots_ = std::vector<Slot>(kFirstSlots);
  size_t size_ = 0;
  std::vector<std::unique_ptr<Block>> retired_;
  uint64_t generation_ = 0;
  size_t peak_ = 0;
};

}  // namespace hostvisor::emu
