// Decoded basic blocks, cached by the guest-physical address of their first
// byte and the decoding mode. A block remembers the generation of the code
// page(s) it came from and is dropped when a write bumped it (CodeMap).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
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

  Block* find(uint64_t key) {
    Fast& f = fast_[(key ^ (key >> 12)) & (kFastSize - 1)];
    if (f.key == key && f.block) return f.block;
    auto it = blocks_.find(key);
    if (it == blocks_.end()) return nullptr;
    f.key = key;
    f.block = it->second.get();
    return f.block;
  }

  Block* insert(std::unique_ptr<Block> block) {
    if (blocks_.size() >= kMaxBlocks) clear();
    Block* b = block.get();
    auto [it, inserted] = blocks_.insert_or_assign(block->key, std::move(block));
    (void)it;
    if (!inserted) ++generation_;  // the block this key had is freed
    if (blocks_.size() > peak_) peak_ = blocks_.size();
    Fast& f = fast_[(b->key ^ (b->key >> 12)) & (kFastSize - 1)];  // the one slot that may name this key
    f.key = b->key;
    f.block = b;
    return b;
  }

  // Drops a stale block. Never called while it runs.
  void erase(uint64_t key) {
    forget_fast(key);
    blocks_.erase(key);
    ++generation_;
  }

  // Drops a block whose code page was written since it was decoded. Every
  // link to it is void already (the write moved the CodeMap's count, part
  // of each link's stamp), so it is kept, not freed, until kMaxRetired pile
  // up: then the generation moves once for all of them. Moving it at every
  // rewritten page voided every link of the vCPU 16K times in a Linux boot.
  void retire(uint64_t key) {
    auto it = blocks_.find(key);
    if (it == blocks_.end()) return;
    forget_fast(key);
    retired_.push_back(std::move(it->second));
    blocks_.erase(it);
    if (retired_.size() >= kMaxRetired) {
      ++generation_;
      retired_.clear();
    }
  }

  void clear() {
    ++generation_;
    blocks_.clear();
    retired_.clear();
    for (Fast& f : fast_) f = Fast{};
  }

  size_t size() const { return blocks_.size(); }
  size_t peak() const { return peak_; }  // the most blocks it held at once
  // Changes whenever a block may have been freed, voiding BlockLinks.
  uint64_t generation() const { return generation_; }

 private:
  static constexpr size_t kFastSize = 16384;
  static constexpr size_t kMaxRetired = 256;
  struct Fast {
    uint64_t key = ~0ull;
    Block* block = nullptr;
  };
  void forget_fast(uint64_t key) {
    Fast& f = fast_[(key ^ (key >> 12)) & (kFastSize - 1)];
    if (f.key == key) f = Fast{};
  }
  std::unordered_map<uint64_t, std::unique_ptr<Block>> blocks_;
  std::vector<std::unique_ptr<Block>> retired_;
  Fast fast_[kFastSize];
  uint64_t generation_ = 0;
  size_t peak_ = 0;
};

}  // namespace hostvisor::emu
