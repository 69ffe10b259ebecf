#include "hv/emu/interpreter.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "hv/emu/code_map.h"
#include "hv/emu/flags.h"
#include "hv/emu/interrupts.h"
#include "hv/emu/jit/tier_options.h"
#include "hv/emu/mmu.h"
#include "hv/emu/platform/local_apic.h"
#include "hv/emu/segments.h"
#include "hv/hex.h"
#include "memory/guest_memory.h"

namespace hostvisor::emu {
namespace {

constexpr unsigned kMaxBlockInsns = 64;
constexpr unsigned kMaxInsnLength = 15;

}  // namespace

bool deliver_unrestartable(Cpu& cpu, uint8_t vector, EventKind kind, bool has_error, uint32_t error) {
  try {
    return deliver_event(cpu, vector, kind, has_error, error, cpu.rip);
  } catch (const IoExitRequest&) {
    io_commit(cpu);
    throw EmulationFailure{"delivering an exception or interrupt touched MMIO (IDT, GDT, TSS or stack outside RAM)"};
  }
}

Interpreter::~Interpreter() { release_leave_word(leave_); }

Interpreter::Interpreter(Cpu& cpu) : cpu_(cpu) {
  auto options = jit::tier_options();
  if (!options) {
    // Only the environment can get here; the vCPU runs, on the reference tier.
    std::fprintf(stderr, "hostvisor: %s; using the interpreter\n", options.error().message().c_str());
    return;
  }
  if (options->tier != jit::Tier::kJit) return;
  auto translator = jit::Translator::create(options->code_cache_bytes);
  if (!translator) {
    std::fprintf(stderr, "hostvisor: %s; using the interpreter\n", translator.error().message().c_str());
    return;
  }
  translator_ = std::move(*translator);
}

void reset_cpu(Cpu& cpu) {
  const SystemRegisters reset = reset_system_registers();
  std::memset(cpu.gpr, 0, sizeof(cpu.gpr));
  cpu.gpr[2] = 0x600;  // EDX holds the processor signature after reset
  cpu.rip = 0xfff0;
  write_flags(cpu, 2);
  load_segment_state(cpu, reset);
  cpu.cr0 = reset.cr0;
  cpu.cr2 = cpu.cr3 = cpu.cr4 = 0;
  cpu.efer = 0;
  cpu.dr[6] = 0xffff0ff0;
  cpu.dr[7] = 0x400;
  cpu.cpl = 0;
  cpu.halted = false;
  cpu.interrupt_shadow = false;
  cpu.nmi_blocked = false;
  cpu.io = IoReplay{};
  tlb_flush(cpu);
  update_mode(cpu);
}

// Marks `page` code (the caller read its generation first) before its bytes
// are read, and checks whether every other running vCPU has acknowledged the
// epoch by then: if one has not, it may be inside a block storing into the
// page through a write entry made while the page was data, and the block
// stays provisional until it has (and its bytes are compared).
void Interpreter::mark_code_before_reading(Block& block, uint64_t page) {
  cpu_.code->mark_code(page);
  const uint64_t epoch = cpu_.code->epoch();
  block.confirm_epoch = epoch;
  if (!cpu_.code->all_acknowledged(epoch, cpu_.code_slot)) block.provisional = true;
}

Block* Interpreter::decode_block(uint64_t phys, uint64_t key) {
  const uint64_t lin = cpu_.fetch_linear;
  const bool user = cpu_.cpl == 3;
  uint8_t* host = cpu_.memory ? cpu_.memory->host_pointer(GuestAddress(phys & ~0xfffull), 0x1000) : nullptr;
  if (!host) throw EmulationFailure{"the guest executes outside RAM"};
  auto block = std::make_unique<Block>();
  block->key = key;
  block->phys = phys;
  if (cpu_.code) {
    block->generation = cpu_.code->generation(phys);
    mark_code_before_reading(*block, phys);
  }
  const bool real = !(cpu_.cr0 & x86::kCr0Pe);
  const uint64_t start = phys & 0xfff;
  // The bytes are read once, into a copy the decoder reads: a provisional
  // block keeps exactly what it was decoded from. 64 instructions of at most
  // 15 bytes fit in it.
  uint8_t copy[kMaxBlockInsns * kMaxInsnLength];
  std::memcpy(copy, host + start, std::min<uint64_t>(sizeof(copy), 0x1000 - start));
  uint64_t off = start;
  uint8_t buf[kMaxInsnLength];  // an instruction at the page end: its bytes from both pages
  uint64_t avail = 0;
  for (unsigned n = 0; n < kMaxBlockInsns; ++n) {
    avail = 0x1000 - off;
    const uint8_t* bytes = copy + (off - start);
    size_t length = kMaxInsnLength;
    uint64_t second_phys = 0;
    uint32_t second_generation = 0;
    bool second_ok = true;
    GuestFault second_fault{};
    if (avail < kMaxInsnLength) {
      std::memcpy(buf, bytes, avail);
      uint64_t next_lin = (lin & ~0xfffull) + 0x1000;
      if (!cpu_.long_mode) next_lin &= 0xffffffff;
      const uint64_t saved_cr2 = cpu_.cr2;
      uint8_t* host2 = nullptr;
      try {
        const TlbEntry& e2 = tlb_fill(cpu_, next_lin, Access::kExec, user);
        second_phys = e2.phys;
        host2 = e2.host ? e2.host : (cpu_.memory ? cpu_.memory->host_pointer(GuestAddress(e2.phys), 0x1000) : nullptr);
      } catch (const GuestFault& f) {
        second_ok = false;
        second_fault = f;
      }
      if (second_ok && host2) {
        // Marked before its bytes are read, as the first page (even if the
        // instruction turns out to end in this page: a page next to code).
        if (cpu_.code) {
          second_generation = cpu_.code->generation(second_phys);
          mark_code_before_reading(*block, second_phys);
        }
        std::memcpy(buf + avail, host2, kMaxInsnLength - avail);
      } else {
        length = avail;  // decode what this page holds; fault only if the instruction needs more
      }
      // The page walk set CR2 whether or not the instruction turns out to need the bytes.
      if (!second_ok) cpu_.cr2 = saved_cr2;
      bytes = buf;
      Insn insn;
      const Decoder::Status st = decoder_.decode(bytes, length, cpu_.code_size, real, insn);
      if (st == Decoder::Status::kNeedMoreBytes) {
        if (n > 0) break;  // end the block before it; the next block faults properly
        if (!second_ok) {
          cpu_.cr2 = next_lin;
          throw second_fault;
        }
        throw EmulationFailure{"the guest executes across into a page outside RAM"};
      }
      block->insns.push_back(insn);
      if (off + insn.len > 0x1000) {
        block->crosses_page = true;
        block->second_page = second_phys;
        block->second_generation = second_generation;
      }
      break;  // the page is done
    }
    Insn insn;
    decoder_.decode(bytes, length, cpu_.code_size, real, insn);
    block->insns.push_back(insn);
    off += insn.len;
    if (insn.ends_block || off >= 0x1000) break;
  }
  if (block->provisional) {
    uint64_t total = 0;
    for (const Insn& insn : block->insns) total += insn.len;
    const uint64_t first = std::min<uint64_t>(total, 0x1000 - start);
    block->decoded_bytes.assign(copy, copy + first);
    if (block->crosses_page)
      block->decoded_bytes.insert(block->decoded_bytes.end(), buf + avail, buf + avail + (total - first));
  }
  return cache_.insert(std::move(block));
}

bool Interpreter::decodes_as_before(const Block& b) const {
  const size_t size = b.decoded_bytes.size();
  const size_t first = std::min<size_t>(size, 0x1000 - (b.phys & 0xfff));
  const uint8_t* p = cpu_.memory->host_pointer(GuestAddress(b.phys), first);
  if (!p || std::memcmp(p, b.decoded_bytes.data(), first) != 0) return false;
  if (first == size) return true;
  const uint8_t* p2 = cpu_.memory->host_pointer(GuestAddress(b.second_page), size - first);
  return p2 && std::memcmp(p2, b.decoded_bytes.data() + first, size - first) == 0;
}

Block* Interpreter::block_at_rip() {
  uint64_t lin;
  if (cpu_.mode64) {
    if (!is_canonical(cpu_.rip)) raise(kGp, 0);
    lin = cpu_.rip;
  } else {
    if (cpu_.rip > cpu_.seg[kCs].limit) raise(kGp, 0);
    lin = (cpu_.seg[kCs].base + cpu_.rip) & 0xffffffff;
  }
  const bool user = cpu_.cpl == 3;
  const TlbEntry* e = &tlb_slot(cpu_, lin, Access::kExec, user);
  if (e->tag != (lin >> 12)) e = &tlb_fill(cpu_, lin, Access::kExec, user);
  const uint64_t phys = e->phys + (lin & 0xfff);
  const uint64_t span = e->span;
  const bool global = e->global;
  const uint64_t key = BlockCache::key(phys, cpu_.code_size, !(cpu_.cr0 & x86::kCr0Pe));
  cpu_.fetch_linear = lin;
  Block* b = cache_.find(key);
  if (b && cpu_.code) {
    const bool written = cpu_.code->generation(phys) != b->generation;
    bool stale = written;
    if (!stale && b->crosses_page) {
      // The second page is reached through the current mapping, which may differ from the decoding one.
      uint64_t next_lin = (lin & ~0xfffull) + 0x1000;
      if (!cpu_.long_mode) next_lin &= 0xffffffff;
      const TlbEntry* e2 = &tlb_slot(cpu_, next_lin, Access::kExec, user);
      if (e2->tag != (next_lin >> 12)) {
        try {
          e2 = &tlb_fill(cpu_, next_lin, Access::kExec, user);
        } catch (const GuestFault&) {
          e2 = nullptr;  // re-decode: the fault is raised only if the instruction needs the page
        }
      }
      stale = !e2 || e2->phys != b->second_page || cpu_.code->generation(b->second_page) != b->second_generation;
    }
    if (!stale && b->provisional) {
      // Another vCPU may have stored into the page through a write entry
      // that skips the code check: every store visible now is seen (so code
      // patched before a signal this vCPU saw runs patched, as after a
      // serializing instruction on hardware). Once every vCPU has
      // acknowledged the epoch (read before the bytes), no such entry is
      // left: later stores take the slow path and move the generation.
      const bool confirmed = cpu_.code->all_acknowledged(b->confirm_epoch, cpu_.code_slot);
      stale = !decodes_as_before(*b);
      if (!stale && confirmed) {
        b->provisional = false;
        b->decoded_bytes = {};
      }
    }
    if (stale) {
      if (written)
        cache_.retire(key);
      else
        cache_.erase(key);
      b = nullptr;
    }
  }
  if (!b) b = decode_block(phys, key);
  // The caller may link to `b`: an INVLPG of its page(s) must now void the links.
  cpu_.tlb.note_link(lin, span, global);
  if (b->crosses_page) {
    uint64_t next_lin = (lin & ~0xfffull) + 0x1000;
    if (!cpu_.long_mode) next_lin &= 0xffffffff;
    const TlbEntry& e2 = tlb_slot(cpu_, next_lin, Access::kExec, user);
    const bool known = e2.tag == (next_lin >> 12);
    cpu_.tlb.note_link(next_lin, known ? e2.span : ~0ull, known && e2.global);
  }
  return b;
}

uint64_t Interpreter::link_stamp() const {
  return cpu_.tlb.epoch + cache_.generation() + (cpu_.code ? cpu_.code->writes() : 0);
}

Block* Interpreter::next_block(Block* prev) {
  const uint64_t mode = cpu_.code_size | (static_cast<uint64_t>(cpu_.cpl) << 8) |
                        (static_cast<uint64_t>(!(cpu_.cr0 & x86::kCr0Pe)) << 16);
  const uint64_t rip = cpu_.rip, cs_base = cpu_.seg[kCs].base;
  // Read before any lookup: an invalidation by another vCPU after this point
  // changes the stamp, so a link made below cannot outlive it.
  const uint64_t stamp = link_stamp();
  auto valid = [&](const BlockLink& link) {
    return link.rip == rip && link.stamp == stamp && link.cs_base == cs_base && link.mode == mode;
  };
  if (prev) {
    if (valid(prev->links[0])) return prev->links[0].block;
    if (valid(prev->links[1])) return prev->links[1].block;
  }
  BlockLink& recent = jump_cache_[(rip ^ (rip >> 11)) & (kJumpCacheSize - 1)];
  Block* b;
  if (valid(recent)) {
    b = recent.block;
  } else {
    const uint64_t generation = cache_.generation();
    b = block_at_rip();
    // If blocks were freed meanwhile, `prev` may be one of them: do not touch it.
    if (cache_.generation() != generation) return b;
    // A provisional block is looked up at every entry until it is confirmed.
    if (b->provisional) return b;
    recent = BlockLink{rip, b, stamp, cs_base, mode};
  }
  if (prev) {
    // The most recent successor goes first; the other one stays as the second choice.
    prev->links[1] = prev->links[0];
    prev->links[0] = BlockLink{rip, b, stamp, cs_base, mode};
  }
  return b;
}

bool Interpreter::take_events() {
  LocalApic* apic = cpu_.lapic;
  if (!apic) return true;
  if (!apic->needs_attention()) return true;  // lock-free: nothing pending, not waiting for SIPI
  if (apic->has_init() && apic->take_init()) reset_cpu(cpu_);
  if (apic->waiting_for_sipi()) {
    if (auto vector = apic->take_sipi()) {
      reset_cpu(cpu_);
      cpu_.seg[kCs].selector = static_cast<uint16_t>(*vector << 8);
      cpu_.seg[kCs].base = static_cast<uint64_t>(*vector) << 12;
      cpu_.rip = 0;
    }
    return true;
  }
  // The instruction after STI, MOV SS or POP SS runs first; the run loop
  // single-steps it and clears the shadow. NMIs wait too: MOV SS blocks
  // them (the stack switch it starts is not done yet), STI may.
  if (cpu_.interrupt_shadow) return true;
  if (!cpu_.nmi_blocked && apic->has_nmi() && apic->take_nmi()) {
    cpu_.halted = false;
    if (!deliver_unrestartable(cpu_, kNmi, EventKind::kExternal, false, 0)) return false;
    cpu_.nmi_blocked = true;
  }
  if ((cpu_.rflags & kFlagIf) && apic->has_interrupt()) {
    if (auto vector = apic->take_interrupt()) {
      cpu_.halted = false;
      if (!deliver_unrestartable(cpu_, *vector, EventKind::kExternal, false, 0)) return false;
    }
  }
  return true;
}

void Interpreter::see_code_epoch() {
  if (!cpu_.code) return;
  const uint64_t epoch = cpu_.code->epoch();
  if (epoch == cpu_.code_epoch_seen) return;
  cpu_.code_epoch_seen = epoch;
  tlb_flush_writes(cpu_);
  if (cpu_.code_slot != ~0u) cpu_.code->acknowledge(cpu_.code_slot, epoch);
}

void Interpreter::enter_running() {
  if (cpu_.code && cpu_.code_slot != ~0u) cpu_.code->running(cpu_.code_slot, cpu_.code_epoch_seen);
  see_code_epoch();
}

void Interpreter::leave_running() {
  if (cpu_.code && cpu_.code_slot != ~0u) cpu_.code->not_running(cpu_.code_slot);
}

Interpreter::Outcome Interpreter::run(uint64_t limit) {
  Cpu& cpu = cpu_;
  cpu.io.next = 0;  // a restarted instruction replays the accesses completed so far
  uint64_t executed = 0;
  Block* prev = nullptr;  // the block that just ran, for block links
  // The block being run and the instruction running in it: the ones before
  // it completed when a handler throws.
  const Insn* first = nullptr;
  const Insn* running = nullptr;
  // Set while the one instruction under an interrupt shadow runs.
  bool shadow_step = false;
  auto completed_in_block = [&] {
    executed += static_cast<uint64_t>(running - first);
    first = running = nullptr;
  };
  auto stop = [&](Stop why, std::string detail = {}) {
    instructions_ += executed;
    return Outcome{why, std::move(detail)};
  };
  // The instruction running stopped for the VMM's I/O (thrown, or flagged by
  // IN/OUT with RIP still at it): it restarts after the exit.
  auto io_exit = [&] {
    completed_in_block();  // not the one that exits: it restarts
    if (shadow_step) cpu.interrupt_shadow = true;
    cpu.stop_block = false;
    cpu.io.exit_pending = false;
    return stop(Stop::kIo);
  };
  // What chained translations check between blocks.
  static const std::atomic<bool> kNoAttention{false};
  cpu.jit.kick = &kicked_;
  cpu.jit.attention = cpu.lapic ? cpu.lapic->attention_flag() : &kNoAttention;
  static const std::atomic<uint64_t> kNoCodeEpoch{0};
  if (!cpu.code) cpu.code_epoch_seen = 0;
  cpu.jit.code_epoch = cpu.code ? cpu.code->epoch_counter() : &kNoCodeEpoch;
  // Who sets the leave word: the LAPIC when it needs attention, the
  // CodeMap when the epoch moves, kick(). Without it (the CodeMap's list
  // full) translated code has none to look at: the tier is not used.
  cpu.jit.leave = leave_;
  if (cpu.lapic) cpu.lapic->set_attention_poke(leave_);
  const bool leave_word_set = !cpu.code || cpu.code->add_leave_word(leave_);
  // This vCPU may store from here until it returns or sleeps: other vCPUs
  // decoding code count it as running (CodeMap::all_acknowledged).
  enter_running();
  struct Leave {
    Interpreter& self;
    ~Leave() { self.leave_running(); }
  } leave{*this};
  auto sleep = [&] {
    leave_running();
    const bool woken = wait_for_event();
    enter_running();
    return woken;
  };
  for (;;) {
    // A kick is taken only at an instruction boundary with no access half
    // done: an instruction restarted after an I/O exit runs to its end first
    // (the hot loop leaves the block right after it), as KVM_RUN with
    // immediate_exit completes a pending PIO/MMIO before it returns.
    if (kicked_.load(std::memory_order_relaxed) && cpu.io.count == 0 &&
        kicked_.exchange(false, std::memory_order_acq_rel)) {
      return stop(Stop::kInterrupted);
    }
    see_code_epoch();
    shadow_step = false;
    try {
      // One lock-free look at the LAPIC per block. Every instruction after
      // which the SDM recognises events ends a block (IRET, POPF, STI, MOV
      // SS, POP SS, a REP string cut short for a deliverable event), so this
      // is the instruction boundary the architecture names.
      if (cpu.lapic && cpu.lapic->needs_attention()) {
        if (cpu.io.count == 0 && !take_events()) return stop(Stop::kShutdown);
        if (cpu.lapic->needs_attention() && cpu.lapic->waiting_for_sipi()) {
          if (!wait_for_event || !sleep()) return stop(Stop::kHalt);
          continue;
        }
      }
      if (cpu.halted) {
        // Sleeps until an event may wake this CPU (wait_for_event() sees
        // IF; with IF=0 only INIT, NMI or SIPI do, as KVM's in-kernel
        // LAPIC parks a CPU). It says false when the halt is for good:
        // every CPU of the VM sleeps where only another CPU could wake it.
        if (wait_for_event && sleep()) continue;
        cpu.halted = false;  // the VMM's next run() continues after the HLT
        return stop(Stop::kHalt);
      }
      if (executed >= limit) return stop(Stop::kInstructionLimit);

      Block* block = next_block(prev);
      prev = nullptr;
      // Decoding it may have made a page code: this vCPU's own write entries
      // for it go before the block runs (it may store into its own page).
      see_code_epoch();
      const uint64_t rip_mask = size_mask(cpu.code_size);
      if (__builtin_expect((cpu.rflags & kFlagTf) || cpu.interrupt_shadow, 0)) {
        // One instruction alone. RFLAGS.TF: then a debug trap (INT n and IRET
        // into a handler clear TF first). An interrupt shadow covers exactly
        // this instruction, so the events it held back are looked at right
        // after it, not after the rest of its block. It is cleared first
        // because the instruction may open a new one (MOV SS; MOV SS); an
        // I/O exit puts it back (the instruction restarts, still shadowed).
        const Insn& insn = block->insns.front();
        shadow_step = cpu.interrupt_shadow;
        cpu.interrupt_shadow = false;
        cpu.next_rip = (cpu.rip + insn.len) & rip_mask;
        insn.fn(cpu, insn);
        if (cpu.io.exit_pending) return io_exit();
        shadow_step = false;
        cpu.rip = cpu.next_rip;
        ++executed;
        io_commit(cpu);
        cpu.stop_block = false;
        if (cpu.rflags & kFlagTf) {
          cpu.dr[6] |= 1ull << 14;  // BS
          if (!deliver_unrestartable(cpu, kDb, EventKind::kException, false, 0)) return stop(Stop::kShutdown);
        }
        continue;
      }
      // The hot loop. A handler that needs the block to end early (its code
      // was written, the mode changed) sets cpu.stop_block; an access that
      // went to a device leaves a record in cpu.io, committed here. The
      // instructions are counted when the block is left (a fault counts the
      // one that faulted, see below).
      first = block->insns.data();
      const Insn* const end = first + block->insns.size();
      running = first;
      // The translated tier runs what it translated of the block, maybe
      // chained blocks after it; the interpreter goes on where it stopped
      // (the instruction a soft-TLB check did not take, or the first one
      // it does not translate).
      if (translator_ && leave_word_set && cpu.code_size == 8 && !block->provisional) {
        // With a CodeMap every chained entry checks its own page's
        // generation (jit/translator.cpp), so a code write elsewhere or a
        // block freed leaves the chains alone; without one (the emulator's
        // unit tests), a block freed or re-decoded undoes them all.
        const uint64_t chain_stamp = cpu.code ? 0 : cache_.generation();
        const unsigned ran = translator_->run(cpu, *block, chain_stamp, limit - executed);
        if (ran && cpu.jit.chained) {
          // Stopped in a later block: its rest is found by RIP.
          executed += ran;
          first = running = nullptr;
          continue;
        }
        running += ran;
        if (running == end) {
          prev = block;
          completed_in_block();
          continue;
        }
        translator_->note_interpreted(*running);
      }
      for (;;) {
        cpu.next_rip = (cpu.rip + running->len) & rip_mask;
        running->fn(cpu, *running);
        cpu.rip = cpu.next_rip;
        ++running;
        if (__builtin_expect(cpu.stop_block | (cpu.io.count != 0), 0)) {
          if (cpu.io.exit_pending) {
            --running;
            cpu.rip = (cpu.next_rip - running->len) & rip_mask;
            return io_exit();
          }
          io_commit(cpu);
          if (cpu.stop_block || kicked_.load(std::memory_order_relaxed)) {
            cpu.stop_block = false;
            break;
          }
        }
        if (running == end) {
          // A block that ran to its end may link to its successor (its insns may have been
          // invalidated by a write, but the Block object lives until the cache generation changes).
          prev = block;
          break;
        }
      }
      completed_in_block();
    } catch (const GuestFault& f) {
      completed_in_block();
      io_commit(cpu);
      cpu.stop_block = false;
      ++executed;  // the faulting instruction counts too
      try {
        if (!deliver_unrestartable(cpu, f.vector, EventKind::kException, f.has_error, f.error)) {
          return stop(Stop::kShutdown);
        }
      } catch (const EmulationFailure& e) {
        return stop(Stop::kFailure, std::string(e.what) + " at rip " + hex(cpu.rip));
      }
    } catch (const IoExitRequest&) {
      return io_exit();
    } catch (const ShutdownRequest&) {
      completed_in_block();
      return stop(Stop::kShutdown);
    } catch (const EmulationFailure& e) {
      completed_in_block();
      io_commit(cpu);
      return stop(Stop::kFailure, std::string(e.what) + " at rip " + hex(cpu.rip));
    }
  }
}

}  // namespace hostvisor::emu
