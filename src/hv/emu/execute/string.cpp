// String instructions: MOVS CMPS STOS LODS SCAS INS OUTS, with REP/REPE/REPNE.
// A repeated instruction runs a bounded number of iterations per dispatch and
// then restarts itself, so kicks, interrupts and I/O exits are taken between
// iterations with RCX/RSI/RDI describing the remaining work (as on hardware).
// An event that becomes deliverable during the dispatch cuts it short after
// the iteration that saw it: the SDM recognises interrupts between
// iterations, and the run loop takes them when the instruction's block ends.
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/io.h"
#include "hv/emu/execute/operands.h"
#include "hv/emu/interrupts.h"
#include "hv/emu/platform/local_apic.h"

namespace hostvisor::emu {
namespace {

constexpr unsigned kIterationsPerDispatch = 4096;

enum class StringOp { kMovs, kCmps, kStos, kLods, kScas, kIns, kOuts };

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
