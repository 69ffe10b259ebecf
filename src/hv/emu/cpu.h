// The software CPU's architectural state and the small types every part of
// the interpreter shares (fault and exit signals, lazy flags, the soft TLB,
// the replay log that lets an instruction touching MMIO or a port be
// restarted after the VMM answered the access).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include "hv/cpu_state.h"
#include "hv/emu/second_level_tlb.h"
#include "hv/emu/tlb_mirror.h"

namespace hostvisor {
class Bus;
class GuestMemory;
}  // namespace hostvisor

namespace hostvisor::emu {

class Clock;
class CodeMap;
class LocalApic;

// Segment register numbers in x86 encoding order.
// The x86 encoding, which segment_registers() (hv/cpu_state.h) follows too.
enum SegReg : uint8_t { kEs = 0, kCs = 1, kSs = 2, kDs = 3, kFs = 4, kGs = 5, kNoSeg = 0xff };

// Exception vectors.
enum Vector : uint8_t {
  kDe = 0,
  kDb = 1,
  kNmi = 2,
  kBp = 3,
  kOf = 4,
  kBr = 5,
  kUd = 6,
  kNm = 7,
  kDf = 8,
  kTs = 10,
  kNp = 11,
  kStackFault = 12,
  kGp = 13,
  kPf = 14,
  kMf = 16,
  kAc = 17,
  kMc = 18,
  kXm = 19,
};

// Thrown by an instruction that raises an architectural exception. The
// instruction has changed no architectural state (handlers do every memory
// access before writing registers), so RIP still points at it.
struct GuestFault {
  uint8_t vector;
  bool has_error;
  uint32_t error;
};

// Thrown when an instruction needs the VMM to perform a port or MMIO access;
// the access is the last record of Cpu::io. The instruction is restarted on
// the next run() and the replay log answers the access.
struct IoExitRequest {};

// Thrown when the emulator meets something it does not implement (as opposed
// to something the architecture rejects): becomes FailureExit.
struct EmulationFailure {
  const char* what;
};

// Thrown when the CPU shuts down (a fault while delivering a double fault).
struct ShutdownRequest {};

[[noreturn]] inline void raise(uint8_t vector) { throw GuestFault{vector, false, 0}; }
[[noreturn]] inline void raise(uint8_t vector, uint32_t error) { throw GuestFault{vector, true, error}; }

// Lazy arithmetic flags: the last flag-setting operation is recorded and the
// six arithmetic flags are computed only when something reads them.
enum class FlagOp : uint8_t { kNone, kAdd, kAdc, kSub, kSbb, kLogic, kInc, kDec };

struct LazyFlags {
  uint64_t res = 0, a = 0, b = 0;
  FlagOp op = FlagOp::kNone;
  uint8_t size = 8;   // operand size in bytes
  uint8_t carry = 0;  // carry-in for ADC/SBB, preserved CF for INC/DEC
};

constexpr uint64_t kFlagCf = 1ull << 0;
constexpr uint64_t kFlagPf = 1ull << 2;
constexpr uint64_t kFlagAf = 1ull << 4;
constexpr uint64_t kFlagZf = 1ull << 6;
constexpr uint64_t kFlagSf = 1ull << 7;
constexpr uint64_t kFlagTf = 1ull << 8;
constexpr uint64_t kFlagIf = 1ull << 9;
constexpr uint64_t kFlagDf = 1ull << 10;
constexpr uint64_t kFlagOf = 1ull << 11;
constexpr uint64_t kFlagIopl = 3ull << 12;
constexpr uint64_t kFlagNt = 1ull << 14;
constexpr uint64_t kFlagRf = 1ull << 16;
constexpr uint64_t kFlagVm = 1ull << 17;
constexpr uint64_t kFlagAc = 1ull << 18;
constexpr uint64_t kFlagId = 1ull << 21;
constexpr uint64_t kArithFlags = kFlagCf | kFlagPf | kFlagAf | kFlagZf | kFlagSf | kFlagOf;

// Soft TLB: direct-mapped, one entry per 4 KiB linear page, separate arrays
// per access kind and privilege so a hit needs one compare. A write entry
// exists only when the page is writable, its dirty bit is set and it holds
// no decoded code, so the fast write path needs no further checks.
// (kTlbSize, kTlbInvalid and the translator's mirror: tlb_mirror.h.)

struct TlbEntry {
  uint64_t tag = kTlbInvalid;  // linear address >> 12
  uint8_t* host = nullptr;     // host address of the page, nullptr if not RAM
  uint64_t phys = 0;           // guest-physical page address
  bool global = false;         // G bit with CR4.PGE: survives CR3 loads
  uint64_t span = 0;           // 4 KiB pages - 1 of the guest page it is a slice of (large pages)
};

enum class Access : uint8_t { kRead = 0, kWrite = 1, kExec = 2 };

// Block links (interpreter.cpp) hold translations of code pages and stay
// valid while `epoch` is unchanged. Every flush bumps it except INVLPG of a
// 2 MiB region that no link was made in since the last bump (`linked`, one
// bit per region hash), so the kernel's INVLPGs of data pages keep them.
struct Tlb {
  static constexpr unsigned kLinkedRegions = 4096;
  TlbEntry e[2][3][kTlbSize];  // [user][Access]
  bool has_large_pages = false;
  uint64_t epoch = 0;  // bumped by flushes that may drop a linked translation
  uint64_t linked[kLinkedRegions / 64] = {};
  bool linked_huge = false;  // a link was made in a page of more than 4 MiB: every INVLPG bumps
  // Since the last bump: a link was made (a flush that finds none leaves the
  // epoch: every link it could void is void already), and one was made in a
  // page without the G bit (a CR3 load that finds none leaves it: global
  // translations survive it). Linux flushes globals by toggling CR4.PGE, two
  // full flushes in a row, and switches CR3 into code on global pages.
  bool linked_any = false;
  bool linked_non_global = false;
  TlbMirrorRef mirror;    // the translated code's copy of the read and write arrays (tlb_mirror.h)
  SecondLevelTlb second;  // what walks found for 4 KiB pages, for this level's misses (second_level_tlb.h)

  void bump_epoch() {
    ++epoch;
    std::memset(linked, 0, sizeof(linked));
    linked_huge = false;
    linked_any = false;
    linked_non_global = false;
  }
  // A link is made to code at `linear`, in a guest page of `span` + 1 4 KiB
  // pages (~0 when unknown), mapped global or not.
  void note_link(uint64_t linear, uint64_t span, bool global) {
    linked_any = true;
    if (!global) linked_non_global = true;
    if (span > 0x3ff) {
      linked_huge = true;
      return;
    }
    // A 4 MiB page spans two 2 MiB regions; INVLPG anywhere in it drops it.
    const uint64_t first = ((linear >> 12) & ~span) >> 9, last = ((linear >> 12) | span) >> 9;
    for (uint64_t r = first; r <= last; ++r) linked[(r % kLinkedRegions) / 64] |= 1ull << (r % 64);
  }
  void flush() {
    if (linked_any) bump_epoch();
    for (auto& by_priv : e)
      for (auto& by_kind : by_priv)
        for (auto& entry : by_kind) entry.tag = kTlbInvalid;
    if (TlbMirror* m = mirror.get()) m->clear();
    second.flush();
    has_large_pages = false;
  }
  // What a CR3 load does: global translations (kernel mappings shared by every
  // address space) stay, so a context switch does not re-walk them.
  void flush_non_global() {
    if (linked_non_global) bump_epoch();
    second.flush_non_global();
    TlbMirror* m = mirror.get();
    for (unsigned user = 0; user < 2; ++user)
      for (unsigned kind = 0; kind < 3; ++kind)
        for (unsigned i = 0; i < kTlbSize; ++i)
          if (!e[user][kind][i].global) {
            e[user][kind][i].tag = kTlbInvalid;
            if (m && kind < 2) m->tag[user][kind][i] = kTlbInvalid;
          }
  }
  // INVLPG: drops the translation of `linear`'s page, all of it for a large
  // page (cached as 4 KiB slices).
  void flush_page(uint64_t linear) {
    const uint64_t tag = linear >> 12;
    const uint64_t region = tag >> 9;
    bool dropped_large = false;  // conservative: a large page's translation changed under links
    second.flush_page(linear);
    TlbMirror* m = mirror.get();
    for (unsigned user = 0; user < 2; ++user)
      for (unsigned kind = 0; kind < 3; ++kind) {
        // Every entry may hold a slice of a large page; else only the page's own.
        const unsigned first = has_large_pages ? 0 : tag & (kTlbSize - 1);
        const unsigned last = has_large_pages ? kTlbSize - 1 : first;
        for (unsigned i = first; i <= last; ++i) {
          TlbEntry& entry = e[user][kind][i];
          if (entry.tag == kTlbInvalid || ((entry.tag ^ tag) & ~entry.span) != 0) continue;
          dropped_large |= entry.span != 0;
          entry.tag = kTlbInvalid;
          if (m && kind < 2) m->tag[user][kind][i] = kTlbInvalid;
        }
      }
    if (dropped_large || linked_huge || (linked[(region % kLinkedRegions) / 64] >> (region % 64)) & 1) bump_epoch();
  }
};

// Port and MMIO accesses of the instruction being executed. When an access
// is not yet in the log the instruction stops (IoExitRequest) and the VMM
// performs it; on re-execution the log answers the accesses in order.
struct IoRecord {
  bool is_port = false;
  bool is_write = false;
  uint8_t size = 0;
  uint64_t address = 0;
  uint8_t data[8] = {};
};

struct IoReplay {
  static constexpr unsigned kMax = 4;
  IoRecord records[kMax];
  unsigned count = 0;  // records of the current instruction
  unsigned next = 0;   // next record to replay
  // IN/OUT's exit, flagged rather than thrown (port_read_or_exit): the
  // handler returns with nothing done and the run loop stops as for an
  // IoExitRequest. The serial console's bytes are most of a boot's exits.
  bool exit_pending = false;
};

// Model-specific registers the emulator keeps.
struct MsrState {
  uint64_t star = 0, lstar = 0, cstar = 0, sfmask = 0, kernel_gs_base = 0;
  uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  uint64_t pat = 0x0007040600070406ull;
  uint64_t tsc_aux = 0;
  int64_t tsc_offset = 0;
  uint64_t misc_enable = 1;  // fast strings
  uint64_t spec_ctrl = 0;
  uint64_t mtrr_def_type = 0;
  uint64_t tsc_deadline = 0;
};

// x87 FPU state (the MMX registers alias the significands of st[]).
struct X87State {
  uint16_t fcw = 0x37f;
  uint16_t fsw = 0;  // TOP in bits 11-13
  uint8_t ftw = 0;   // abridged tag word: one bit per physical register, 1 = not empty
  uint16_t fop = 0;  // last non-control instruction's opcode (11 bits)
  uint16_t fcs = 0, fds = 0;
  uint64_t fip = 0, fdp = 0;
  uint8_t st[8][10] = {};  // physical registers R0-R7 (ST(i) is R[(TOP + i) % 8]), 80-bit little-endian
};

// The translator's jump cache (jit/): where a RET in translated code goes
// on without the run loop. Keyed by the target's RIP, its guest-physical
// page (checked against the fetch TLB's translation of the RIP) and the
// privilege (one half of the table each); `code` is the target block's
// chain entry.
struct JumpCacheEntry {
  uint64_t rip = 1ull << 63;  // never a canonical RIP (~0 is one: the last byte): empty
  uint64_t phys = 0;
  const uint8_t* code = nullptr;
  uint64_t unused = 0;  // 32 bytes: the index scales by a shift
};
constexpr unsigned kJumpCacheBits = 12;
constexpr unsigned kJumpCacheSize = 1u << kJumpCacheBits;  // per privilege

// What translated code (jit/) reads and leaves for the run loop. Chained
// translations run without returning, so their checks live here.
struct JitRun {
  int64_t budget = 0;       // instructions chained blocks may still start (then back to the run loop)
  uint64_t executed = 0;    // guest instructions completed since the entry
  uint64_t chains = 0;      // chained block entries (statistics)
  uint64_t side_exits = 0;  // returns before an instruction a soft-TLB check did not take (statistics)
  const std::atomic<bool>* attention = nullptr;  // the LAPIC's needs_attention() flag
  const std::atomic<bool>* kick = nullptr;       // the run loop's kick flag
  // The CodeMap's epoch, which a chained block entry compares with
  // Cpu::code_epoch_seen: a page became code, so the run loop must drop
  // the write TLB entries that skip the code-page check before this vCPU
  // stores again.
  const std::atomic<uint64_t>* code_epoch = nullptr;
  // The vCPU's leave word (leave_word.h), which every chained block entry
  // compares with 0: set by the LAPIC, a kick and a new code epoch, cleared
  // by each entry from the run loop.
  std::atomic<uint32_t>* leave = nullptr;
  // The chainable exit the last return went through (its JMP rel32), the
  // RIP it went to and the guest-physical page and CPL it was left from:
  // the next entry may patch that jump to jump straight into its block.
  uint8_t* last_exit = nullptr;
  uint64_t last_exit_rip = 0;
  uint64_t last_exit_page = 0;
  uint8_t last_exit_user = 0;
  bool chained = false;  // the return came from a block entered through a chain
  // A chained entry found its block's code page written since it was
  // translated: the chains are undone at the next entry from the run loop,
  // so the exits that led there can chain to the new translation.
  bool stale_chain = false;
  // The jump cache ([2][kJumpCacheSize]: supervisor, user); a RET that
  // missed it returns with `jump_missed` set, so the run loop's next entry
  // into a translation fills its entry.
  JumpCacheEntry* jump_cache = nullptr;
  bool jump_missed = false;
  uint64_t jump_hits = 0, jump_misses = 0;            // statistics
  uint64_t tlb_refills = 0, tlb_refill_failures = 0;  // the refill routine's (statistics)
  // A translated MOVS/STOS: the destination's host address between its
  // checks, then RDI and RSI as the instruction leaves them (jit/translate_string.h).
  uint64_t string_scratch[3] = {};
};

struct Cpu {
  // General-purpose registers in encoding order (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15).
  uint64_t gpr[16] = {};
  uint64_t rip = 0;
  uint64_t next_rip = 0;  // address after the executing instruction; branches overwrite it
  uint64_t rflags = 2;    // non-arithmetic bits always; arithmetic bits when flags.op == kNone
  LazyFlags flags;

  // SSE state: XMM0-15 and MXCSR; x87 control/status for FXSAVE.
  alignas(16) uint8_t xmm[16][16] = {};
  uint32_t mxcsr = 0x1f80;
  X87State x87;

  Segment seg[6];
  Segment tr, ldt;
  DescriptorTable gdt, idt;
  uint64_t cr0 = 0x60000010, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0, efer = 0;
  uint64_t dr[8] = {0, 0, 0, 0, 0, 0, 0xffff0ff0, 0x400};
  uint64_t apic_base = 0xfee00900;
  MsrState msr;

  // Derived mode, recomputed whenever CR0, EFER or CS change.
  uint8_t code_size = 2;   // default operand/address size in bytes: 2, 4 or 8
  uint8_t stack_size = 2;  // 2, 4 or 8
  uint8_t cpl = 0;
  bool long_mode = false;  // EFER.LMA
  bool mode64 = false;     // 64-bit code segment in long mode

  // Interrupt shadow after STI / MOV SS: no interrupt before the next instruction completes.
  bool interrupt_shadow = false;
  // Set when the current block must end after this instruction (its code was written, mode changed).
  bool stop_block = false;
  bool halted = false;
  bool nmi_blocked = false;   // from NMI delivery until the next IRET
  uint64_t fetch_linear = 0;  // linear address of the block being looked up

  Tlb tlb;
  IoReplay io;

  const GuestMemory* memory = nullptr;
  CodeMap* code = nullptr;
  // The platform this CPU is wired to (all optional: bare-CPU tests run without).
  LocalApic* lapic = nullptr;     // its own local APIC: MMIO page, APIC MSRs, CR8, TSC
  const Clock* clock = nullptr;   // the platform clock RDTSC follows
  Bus* internal_ports = nullptr;  // PIC, PIT, port 0x61: handled without a VM exit
  Bus* internal_mmio = nullptr;   // IOAPIC
  uint64_t code_epoch_seen = 0;
  // This vCPU's acknowledgement slot in the CodeMap (CodeMap::attach); ~0u:
  // none (a lone CPU nobody waits for).
  unsigned code_slot = ~0u;
  unsigned apic_id = 0;
  JitRun jit;
};

}  // namespace hostvisor::emu
