// String instructions: MOVS CMPS STOS LODS SCAS INS OUTS, with REP/REPE/REPNE.
// A repeated instruction runs a bounded number of iterations per dispatch and
// then restarts itself, so kicks, interrupts and I/O exits are taken between
// iterations with RCX/RSI/RDI describing the remaining work (as on hardware).
// An event that becomes deliverable during the dispatch cuts it short after
// the iteration that saw it: the SDM recognises interrupts between
// iterations, and the run loop takes them when the instruction's block ends.
#include <algorithm>

#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/io.h"
#include "hv/emu/execute/operands.h"
#include "hv/emu/interrupts.h"
#include "hv/emu/platform/local_apic.h"

namespace hostvisor::emu {
namespace {

constexpr unsigned kIterationsPerDispatch = 4096;

enum class StringOp { kMovs, kCmps, kStos, kLods, kScas, kIns, kOuts };

// The host's own REP MOVS/STOS of `count` elements: the guest's instruction,
// so overlapping ranges give what the guest's would. The ABI keeps DF clear.
void host_rep_movs(uint8_t* dst, const uint8_t* src, uint64_t count, unsigned size) {
  switch (size) {
    case 1: asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(count) : : "memory"); break;
    case 2: asm volatile("rep movsw" : "+D"(dst), "+S"(src), "+c"(count) : : "memory"); break;
    case 4: asm volatile("rep movsl" : "+D"(dst), "+S"(src), "+c"(count) : : "memory"); break;
    default: asm volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(count) : : "memory"); break;
  }
}

void host_rep_stos(uint8_t* dst, uint64_t value, uint64_t count, unsigned size) {
  switch (size) {
    case 1: asm volatile("rep stosb" : "+D"(dst), "+c"(count) : "a"(value) : "memory"); break;
    case 2: asm volatile("rep stosw" : "+D"(dst), "+c"(count) : "a"(value) : "memory"); break;
    case 4: asm volatile("rep stosl" : "+D"(dst), "+c"(count) : "a"(value) : "memory"); break;
    default: asm volatile("rep stosq" : "+D"(dst), "+c"(count) : "a"(value) : "memory"); break;
  }
}

// The host page a TLB entry maps for `linear`, or null if not in the TLB
// as plain RAM (a code page has no write entry).
uint8_t* tlb_host(Cpu& cpu, uint64_t linear, Access access) {
  const TlbEntry& e = tlb_slot(cpu, linear, access, user_mode(cpu));
  return e.tag == (linear >> 12) && e.host ? e.host + (linear & 0xfff) : nullptr;
}

// REP MOVS/STOS forwards in 64-bit code, over RAM already in the TLB: the
// iterations that stay within the current source and destination pages (at
// most `limit`) run at once as the host's instruction, since per iteration
// they would take the same TLB hits and direct writes. Returns how many ran:
// 0 leaves the next iteration to the exact path (a TLB miss, MMIO, a code
// page, an element across a page boundary, a pending I/O replay), which
// fills the TLB or faults where the guest would.
template <StringOp op>
uint64_t run_within_pages(Cpu& cpu, const Insn& insn, uint64_t limit) {
  const unsigned size = insn.opsize;
  if (!cpu.mode64 || insn.addrsize != 8 || (cpu.rflags & kFlagDf) || cpu.io.count != 0) return 0;
  const uint64_t dst = cpu.gpr[7];
  uint64_t n = std::min({cpu.gpr[1], limit, (0x1000 - (dst & 0xfff)) / size});
  if (n == 0 || !is_canonical(dst)) return 0;
  uint8_t* to = tlb_host(cpu, dst, Access::kWrite);
  if (!to) return 0;
  if constexpr (op == StringOp::kMovs) {
    const uint8_t seg = insn.mem.seg;
    const uint64_t src = cpu.gpr[6] + ((seg == kFs || seg == kGs) ? cpu.seg[seg].base : 0);
    n = std::min(n, (0x1000 - (src & 0xfff)) / size);
    const uint8_t* from = is_canonical(src) ? tlb_host(cpu, src, Access::kRead) : nullptr;
    if (n == 0 || !from) return 0;
    host_rep_movs(to, from, n, size);
    cpu.gpr[6] += n * size;
  } else {
    host_rep_stos(to, cpu.gpr[0], n, size);
  }
  cpu.gpr[7] += n * size;
  cpu.gpr[1] -= n;
  return n;
}

template <StringOp op>
void string_op(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.opsize;
  const unsigned asize = insn.addrsize;
  const uint64_t amask = address_mask(asize);
  const bool rep = insn.prefixes & (kPrefixRep | kPrefixRepne);
  const bool repne = insn.prefixes & kPrefixRepne;
  const int64_t delta = (cpu.rflags & kFlagDf) ? -static_cast<int64_t>(size) : static_cast<int64_t>(size);
  const uint8_t src_seg = insn.mem.seg;
  if constexpr (op == StringOp::kIns || op == StringOp::kOuts) check_io_permission(cpu, get_reg(cpu, 2, 2), size);
  // The full (locked) deliverability check runs once per dispatch, the first
  // time the LAPIC's lock-free flag is up: IF cannot change inside the
  // instruction, so a masked interrupt does not cost a lock per iteration.
  bool events_looked_at = false;

  for (unsigned i = 0; i < kIterationsPerDispatch; ++i) {
    if (rep && get_reg(cpu, 1, asize) == 0) return;
    if constexpr (op == StringOp::kMovs || op == StringOp::kStos) {
      if (const uint64_t ran = rep ? run_within_pages<op>(cpu, insn, kIterationsPerDispatch - i) : 0) {
        i += static_cast<unsigned>(ran) - 1;
        if (cpu.lapic && !events_looked_at && cpu.lapic->needs_attention()) {
          events_looked_at = true;
          if (event_deliverable(cpu)) break;
        }
        continue;
      }
    }
    const uint64_t si = cpu.gpr[6] & amask;
    const uint64_t di = cpu.gpr[7] & amask;
    bool advance_si = false, advance_di = false;
    if constexpr (op == StringOp::kMovs) {
      const uint64_t v = read_mem_n(cpu, src_seg, si, size);
      write_mem_n(cpu, kEs, di, size, v);
      advance_si = advance_di = true;
    } else if constexpr (op == StringOp::kCmps) {
      const uint64_t a = read_mem_n(cpu, src_seg, si, size);
      const uint64_t b = read_mem_n(cpu, kEs, di, size);
      record_flags(cpu, FlagOp::kSub, size, a - b, a, b);
      advance_si = advance_di = true;
    } else if constexpr (op == StringOp::kStos) {
      write_mem_n(cpu, kEs, di, size, get_reg(cpu, 0, size));
      advance_di = true;
    } else if constexpr (op == StringOp::kLods) {
      set_reg(cpu, 0, size, read_mem_n(cpu, src_seg, si, size));
      advance_si = true;
    } else if constexpr (op == StringOp::kScas) {
      const uint64_t a = get_reg(cpu, 0, size);
      const uint64_t b = read_mem_n(cpu, kEs, di, size);
      record_flags(cpu, FlagOp::kSub, size, a - b, a, b);
      advance_di = true;
    } else if constexpr (op == StringOp::kIns) {
      probe_write(cpu, kEs, di, size);  // fault before the port read has side effects
      const uint64_t v = port_read(cpu, static_cast<uint16_t>(get_reg(cpu, 2, 2)), size);
      write_mem_n(cpu, kEs, di, size, v);
      advance_di = true;
    } else {
      const uint64_t v = read_mem_n(cpu, src_seg, si, size);
      port_write(cpu, static_cast<uint16_t>(get_reg(cpu, 2, 2)), size, v);
      advance_si = true;
    }
    // Commit this iteration.
    if (advance_si) cpu.gpr[6] = (cpu.gpr[6] & ~amask) | ((si + delta) & amask);
    if (advance_di) cpu.gpr[7] = (cpu.gpr[7] & ~amask) | ((di + delta) & amask);
    if (asize == 4) {
      // 32-bit address-size updates zero-extend like any 32-bit register write.
      if (advance_si) cpu.gpr[6] &= 0xffffffff;
      if (advance_di) cpu.gpr[7] &= 0xffffffff;
    }
    io_commit(cpu);
    if (!rep) return;
    set_reg(cpu, 1, asize, get_reg(cpu, 1, asize) - 1);
    if constexpr (op == StringOp::kCmps || op == StringOp::kScas) {
      const bool zf = read_flags(cpu) & kFlagZf;
      if (repne ? zf : !zf) return;
    }
    if (cpu.stop_block) break;  // the string wrote to code: re-dispatch
    if (cpu.lapic && !events_looked_at && cpu.lapic->needs_attention()) {
      events_looked_at = true;
      if (event_deliverable(cpu)) break;
    }
  }
  if (get_reg(cpu, 1, asize) != 0) cpu.next_rip = cpu.rip;  // continue on the next dispatch
}

}  // namespace

void h_movs(Cpu& cpu, const Insn& insn) { string_op<StringOp::kMovs>(cpu, insn); }
void h_cmps(Cpu& cpu, const Insn& insn) { string_op<StringOp::kCmps>(cpu, insn); }
void h_stos(Cpu& cpu, const Insn& insn) { string_op<StringOp::kStos>(cpu, insn); }
void h_lods(Cpu& cpu, const Insn& insn) { string_op<StringOp::kLods>(cpu, insn); }
void h_scas(Cpu& cpu, const Insn& insn) { string_op<StringOp::kScas>(cpu, insn); }
void h_ins(Cpu& cpu, const Insn& insn) { string_op<StringOp::kIns>(cpu, insn); }
void h_outs(Cpu& cpu, const Insn& insn) { string_op<StringOp::kOuts>(cpu, insn); }

}  // namespace hostvisor::emu
