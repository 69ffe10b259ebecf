// The execution engine of one vCPU: finds or decodes the block at RIP,
// runs its handlers, and turns faults, interrupts, I/O and HLT into either
// architectural events (delivered through the IDT) or a reason to stop.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "hv/emu/block_cache.h"
#include "hv/emu/cpu.h"
#include "hv/emu/decoder.h"
#include "hv/emu/interrupts.h"
#include "hv/emu/jit/translator.h"
#include "hv/emu/leave_word.h"

namespace hostvisor::emu {

class Interpreter {
 public:
  enum class Stop {
    kIo,                // the last record of cpu.io needs the VMM; the instruction restarts on the next run
    kHalt,              // HLT with nothing that can wake the CPU
    kShutdown,          // triple fault
    kInterrupted,       // kick()
    kFailure,           // something the emulator does not implement
    kInstructionLimit,  // run(limit) executed `limit` instructions
  };
  struct Outcome {
    Stop stop;
    std::string detail;  // for kFailure
  };

  // Uses the tier the command line or HOSTVISOR_EMU_TIER names (jit/tier_options.h).
  explicit Interpreter(Cpu& cpu);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Runs hot blocks' translatable prefixes as host code (nullptr: interpret only).
  void set_translator(std::unique_ptr<jit::Translator> translator) { translator_ = std::move(translator); }
  const jit::Translator* translator() const { return translator_.get(); }
  // The translator's statistics with this vCPU's block counts (for the
  // per-Block translation fields); only with a translator.
  jit::TranslatorStats translator_stats() const {
    jit::TranslatorStats s = translator_->stats();
    s.blocks = cache_.size();
    s.blocks_peak = cache_.peak();
    return s;
  }

  // Runs until a stop. `limit` bounds the instructions executed (tests, fuzzing).
  Outcome run(uint64_t limit = UINT64_MAX);

  // Thread-safe: makes run() return kInterrupted at the next block boundary,
  // or, when run() restarts an instruction after an I/O exit, right after
  // that instruction completes (never with an access half done).
  void kick() {
    kicked_.store(true, std::memory_order_release);
    leave_->store(1, std::memory_order_release);  // then the word: see leave_word.h
  }
  bool kicked() const { return kicked_.load(std::memory_order_acquire); }

  // Called when the CPU halts or waits for SIPI: blocks until an event may
  // be deliverable or kick(); returns false when nothing could ever wake
  // the CPU (then run() stops with kHalt). Without it a halt stops run().
  std::function<bool()> wait_for_event;

  // Runs `f`, which stores into guest memory outside run() (an event a
  // restored state was delivering), as run() does: counted as running by
  // other vCPUs that decode code meanwhile, with no write TLB entry left
  // from before a page became code.
  template <typename F>
  decltype(auto) while_running(F&& f) {
    enter_running();
    struct Leave {
      Interpreter& self;
      ~Leave() { self.leave_running(); }
    } leave{*this};
    return f();
  }

  // Instructions executed so far (for measurements).
  uint64_t instructions() const { return instructions_; }

  // Drops every cached block (e.g. after a snapshot restore changed memory).
  void flush_code() { cache_.clear(); }

 private:
  Block* block_at_rip();
  // The block at RIP, through `prev`'s links when one is still valid.
  Block* next_block(Block* prev);
  // What a block link was made under (see BlockLink::stamp).
  uint64_t link_stamp() const;
  // Cross-modifying code (CodeMap): a page became code, here or on another
  // vCPU, so the write entries that skip the code-page check go, and the
  // epoch is acknowledged.
  void see_code_epoch();
  // This vCPU may store into guest memory from now on / no longer.
  void enter_running();
  void leave_running();
  Block* decode_block(uint64_t phys, uint64_t key);
  void mark_code_before_reading(Block& block, uint64_t page);
  // A provisional block's bytes are still in memory (see Block::provisional).
  bool decodes_as_before(const Block& b) const;
  // Takes INIT/SIPI/NMI/external interrupts at a block boundary; false on shutdown.
  bool take_events();

  Cpu& cpu_;
  Decoder decoder_;
  BlockCache cache_;
  // The blocks last entered, by RIP: for successors a block's two links do
  // not hold (returns, indirect jumps, the first block after an event).
  // Valid under the same conditions as a BlockLink.
  static constexpr size_t kJumpCacheSize = 2048;
  BlockLink jump_cache_[kJumpCacheSize];
  std::atomic<bool> kicked_{false};
  // Translated code's leave word (leave_word.h): this vCPU's for as long as it lives.
  std::atomic<uint32_t>* const leave_ = acquire_leave_word();
  uint64_t instructions_ = 0;
  std::unique_ptr<jit::Translator> translator_;
};

// Delivers an exception or external interrupt at an instruction boundary
// (what the interpreter does between blocks, and the backend for an event a
// restored state had injected). Unlike INT n, these cannot be restarted
// after a VMM exit, so an IDT, TSS or stack outside RAM throws
// EmulationFailure. Returns false when the CPU shut down (triple fault).
bool deliver_unrestartable(Cpu& cpu, uint8_t vector, EventKind kind, bool has_error, uint32_t error);

// Resets the CPU to its power-on state (INIT keeps the APIC base and MSRs that INIT preserves).
void reset_cpu(Cpu& cpu);

}  // namespace hostvisor::emu
