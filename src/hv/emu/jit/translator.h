// The translating tier: hot blocks run as host code. Guest and host are
// both x86-64, so register-to-register integer instructions are copied as
// they are: one shared entry routine loads the guest's registers into the
// host's (GPR n in GPR n, all but RSP), where they stay across chained
// blocks and jump cache hits, until one shared exit routine stores them
// back; the flags cross block boundaries in a frame slot. A memory operand becomes an
// inline soft-TLB check (tag of the first and last byte, RAM) and the host
// address; a tag miss first calls an out-of-line refill (a page walk that
// fills the entry for RAM, then the check again), and what it cannot fill
// (a fault, MMIO, a page crossing, a non-canonical address) exits before
// the instruction, which the interpreter then runs, so a fault is exactly
// the interpreter's. A final Jcc/JMP rel becomes exits to its
// constant targets; an exit to the same guest page is patched, once taken,
// to jump straight into the target's translation (block chaining), whose
// entry checks the LAPIC's attention flag, the kick and an instruction
// budget first. The first instruction it cannot take ends the translation;
// the interpreter runs the rest of the block, so it stays the reference.
//
// One Translator per vCPU (its thread only): translations live in its own
// CodeCache and hang off the interpreter's Blocks, so a block re-decoded
// after a write to its code page (the CodeMap generations, dma_written) is
// a new Block without one, and a full cache drops them all by generation.
// Chains are undone whenever a block may have been freed or re-decoded.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "hv/emu/block_cache.h"
#include "hv/emu/cpu.h"
#include "hv/emu/jit/code_cache.h"

namespace hostvisor::emu::jit {

struct TranslatorStats {
  uint64_t blocks_translated = 0;  // translations made (a block again after a flush counts again)
  uint64_t translation_ns = 0;
  uint64_t code_bytes = 0;           // host code emitted, all translations so far
  uint64_t entries = 0;              // translated code entered from the run loop (unchained)
  uint64_t chained_entries = 0;      // ... and from another translation (chained)
  uint64_t native_insns = 0;         // guest instructions run as host code
  uint64_t side_exits = 0;           // returns before an instruction a soft-TLB check did not take
  uint64_t mismatched_entries = 0;   // at another RIP or privilege than translated for: interpreted
  uint64_t chains_made = 0;          // exits patched to jump into their target's translation
  uint64_t unchains = 0;             // ... and undone (a block freed or re-decoded somewhere)
  uint64_t jump_hits = 0;            // RET, JMP/CALL r/m and exits to another page that went on through the jump cache
  uint64_t jump_misses = 0;          // ... and that returned to the run loop
  uint64_t tlb_refills = 0;          // soft-TLB misses the refill routine filled (the check then hit)
  uint64_t tlb_refill_failures = 0;  // ... and did not (fault, MMIO, page crossing: a side exit)
  uint64_t fallbacks = 0;            // hot blocks without kMinInsns translatable instructions first
  uint64_t cache_flushes = 0;        // the code cache was full and dropped everything
  uint64_t cache_used = 0;           // bytes of code cache in use, of cache_capacity
  uint64_t cache_capacity = 0;
  // Memory besides the code cache: what the translator allocates (jump
  // cache, chained-exit list at its largest, statistics table, the object
  // itself), and the translation fields every decoded Block carries
  // (kBlockFieldBytes each; the block counts come from the caller, see
  // Interpreter::translator_stats()).
  uint64_t metadata_bytes = 0;
  uint64_t blocks = 0;       // decoded blocks in the vCPU's cache now
  uint64_t blocks_peak = 0;  // ... and at most
  // The instructions the interpreter most often went on with in a block
  // the translator was asked to run (where translations stop, and hot
  // blocks it does not take): mnemonic and count, most frequent first.
  std::vector<std::pair<uint16_t, uint64_t>> top_stops;
};

// Bytes of a Block's translation fields (uses .. native_generation), with
// the padding they bring (the last ones are 8-byte aligned).
constexpr uint64_t kBlockFieldBytes =
    (sizeof(Block::uses) + sizeof(Block::native_insns) + sizeof(Block::native_user) + sizeof(Block::native_rip) +
     sizeof(Block::native) + sizeof(Block::native_chain) + sizeof(Block::native_generation) + 7) &
    ~uint64_t{7};

// One line for HOSTVISOR_EMU_STATS.
std::string describe(const TranslatorStats& stats);

class Translator {
 public:
  // A block is translated on its kHotUses-th entry, when at least
  // kMinInsns instructions lead it that the translator takes, or it is all
  // translatable up to a final direct branch: fewer do not pay for entering
  // and leaving host code from the run loop (the interpreter's specialised
  // handlers run them about as fast), a chained block does.
  static constexpr uint32_t kHotUses = 16;
  static constexpr unsigned kMinInsns = 3;

  static Result<std::unique_ptr<Translator>> create(size_t code_cache_bytes);

  // At the entry of `block` (64-bit code, no TF, no shadow): runs its
  // translation when it has one (translating it once it is hot), and
  // chained translations after it for at most `budget` instructions more.
  // Returns how many instructions ran (0: none, interpret the block); the
  // guest's state is in the Cpu, RIP where they stopped, and
  // cpu.jit.chained says whether that is still in `block`.
  // `chain_stamp` moving undoes every chain (the run loop moves it when a
  // block may have been freed or re-decoded and no CodeMap is there, whose
  // page generations every chained entry checks itself).
  unsigned run(Cpu& cpu, Block& block, uint64_t chain_stamp, uint64_t budget) {
    if (block.native_generation == cache_->generation() && block.native) return enter(cpu, block, chain_stamp, budget);
    if (block.native_insns == 0 && block.uses >= kHotUses) return 0;  // tried: nothing to translate
    if (++block.uses < kHotUses) return 0;
    if (!translate(cpu, block)) return 0;
    return enter(cpu, block, chain_stamp, budget);
  }

  // The run loop interprets `insn` after run() left the rest of its block
  // to it (statistics: which instructions to translate next).
  void note_interpreted(const Insn& insn) {
    if (insn.mnemonic < stops_.size()) ++stops_[insn.mnemonic];
  }

  TranslatorStats stats() const;

  // The soft-TLB check's index with RORX (BMI2, the default where the host
  // has it) or MOV and SHR: tests run both.
  void use_bmi2(bool on) { bmi2_ = on; }

 private:
  explicit Translator(std::unique_ptr<CodeCache> cache);
  bool translate(Cpu& cpu, Block& block);
  unsigned enter(Cpu& cpu, Block& block, uint64_t chain_stamp, uint64_t budget);
  void flush();
  // The refill routines translated checks call on a tag miss, and the entry
  // and exit routines.
  void install_runtime();
  // Points every patched exit back at its return path.
  void unchain_all();

  std::unique_ptr<CodeCache> cache_;
  const uint8_t* refill_ = nullptr;
  const uint8_t* refill_keep_low_xmm_ = nullptr;  // the same, keeping XMM8..XMM12 (block-ending CALL/RET)
  // The entry and exit routines every translation shares (translator.cpp).
  const uint8_t* enter_ = nullptr;
  const uint8_t* exit_ = nullptr;
  bool bmi2_ = __builtin_cpu_supports("bmi2");
  ZydisDecoder decoder_;  // re-reads an instruction's encoding to rewrite its memory operand
  TranslatorStats stats_;
  // Chained exits' rel32s, and where each jumped before (its return path).
  std::vector<std::pair<const uint8_t*, const uint8_t*>> patched_;
  std::vector<JumpCacheEntry> jump_cache_ = std::vector<JumpCacheEntry>(2 * kJumpCacheSize);
  uint64_t chain_stamp_ = 0;
  std::vector<uint64_t> stops_ = std::vector<uint64_t>(ZYDIS_MNEMONIC_MAX_VALUE + 1);
};

// Whether the translator runs `insn` (decoded in 64-bit mode) as itself.
bool translatable(const Insn& insn);

}  // namespace hostvisor::emu::jit
