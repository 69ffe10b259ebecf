// The translating tier: hot blocks' leading run of register-to-register
// integer instructions runs as host code. Guest and host are both x86-64, so
// those instructions are copied as they are, between an entry that loads
// the guest's registers and arithmetic flags from the Cpu into the host's
// and an exit that stores them back. The first instruction it cannot take
// (a memory operand, RSP, a branch, anything system) ends the translated
// part; the interpreter runs the rest of the block, so the interpreter stays
// the reference and a translation never has to fault or exit.
//
// One Translator per vCPU (its thread only): translations live in its own
// CodeCache and hang off the interpreter's Blocks, so a block re-decoded
// after a write to its code page (the CodeMap generations, dma_written) is
// a new Block without one, and a full cache drops them all by generation.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "hv/emu/block_cache.h"
#include "hv/emu/cpu.h"
#include "hv/emu/jit/code_cache.h"

namespace hostvisor::emu::jit {

struct TranslatorStats {
  uint64_t blocks_translated = 0;  // translations made (a block again after a flush counts again)
  uint64_t translation_ns = 0;
  uint64_t entries = 0;        // translated code entered
  uint64_t native_insns = 0;   // guest instructions run as host code
  uint64_t side_exits = 0;     // entries left before their end by a memory operand's slow path
  uint64_t mismatched_entries = 0;  // entered at another RIP or privilege than translated for: interpreted
  uint64_t fallbacks = 0;      // hot blocks without kMinInsns translatable instructions first
  uint64_t code_bytes = 0;     // host code emitted, all translations so far
  uint64_t cache_flushes = 0;  // the code cache was full and dropped everything
  uint64_t cache_used = 0;     // bytes of code cache in use, of cache_capacity
  uint64_t cache_capacity = 0;
};

// One line for HOSTVISOR_EMU_STATS.
std::string describe(const TranslatorStats& stats);

class Translator {
 public:
  // A block is translated on its kHotUses-th entry, when at least
  // kMinInsns instructions lead it that the translator takes: fewer do not
  // pay for entering and leaving host code (the interpreter's specialised
  // handlers run them about as fast).
  static constexpr uint32_t kHotUses = 16;
  static constexpr unsigned kMinInsns = 3;

  static Result<std::unique_ptr<Translator>> create(size_t code_cache_bytes);

  // At the entry of `block` (64-bit code, no TF, no shadow): runs its
  // translated prefix when it has one (translating it once it is hot) and
  // returns how many of its instructions ran, RIP advanced past them.
  unsigned run_prefix(Cpu& cpu, Block& block) {
    if (block.native_generation == cache_->generation() && block.native) return enter(cpu, block);
    if (block.native_insns == 0 && block.uses >= kHotUses) return 0;  // tried: nothing to translate
    if (++block.uses < kHotUses) return 0;
    if (!translate(cpu, block)) return 0;
    return enter(cpu, block);
  }

  TranslatorStats stats() const;

 private:
  explicit Translator(std::unique_ptr<CodeCache> cache);
  bool translate(Cpu& cpu, Block& block);
  unsigned enter(Cpu& cpu, Block& block);

  std::unique_ptr<CodeCache> cache_;
  ZydisDecoder decoder_;  // re-reads an instruction's encoding to rewrite its memory operand
  TranslatorStats stats_;
};

// Whether the translator runs `insn` (decoded in 64-bit mode) as itself.
bool translatable(const Insn& insn);

}  // namespace hostvisor::emu::jit
