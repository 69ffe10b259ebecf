// Operand access shared by the instruction handlers: registers by size,
// effective addresses, memory operands through segmentation and the TLB.
#pragma once

#include <cstdint>

#include "hv/emu/cpu.h"
#include "hv/emu/decoder.h"
#include "hv/emu/flags.h"
#include "hv/emu/mmu.h"

namespace hostvisor::emu {

inline uint64_t get_reg(const Cpu& cpu, uint8_t reg, unsigned size, bool high8 = false) {
  uint64_t v = cpu.gpr[reg];
  switch (size) {
    case 1: return high8 ? (v >> 8) & 0xff : v & 0xff;
    case 2: return v & 0xffff;
    case 4: return v & 0xffffffff;
    default: return v;
  }
}

inline void set_reg(Cpu& cpu, uint8_t reg, unsigned size, uint64_t value, bool high8 = false) {
  uint64_t& r = cpu.gpr[reg];
  switch (size) {
    case 1:
      if (high8) {
        r = (r & ~0xff00ull) | ((value & 0xff) << 8);
      } else {
        r = (r & ~0xffull) | (value & 0xff);
      }
      break;
    case 2: r = (r & ~0xffffull) | (value & 0xffff); break;
    case 4: r = value & 0xffffffff; break;  // 32-bit writes zero-extend
    default: r = value; break;
  }
}

inline uint64_t address_mask(unsigned addrsize) { return size_mask(addrsize); }

// Effective address (segment offset) of the instruction's memory operand.
inline uint64_t effective_address(const Cpu& cpu, const Insn& insn) {
  const MemRef& m = insn.mem;
  uint64_t ea = static_cast<uint64_t>(m.disp);
  if (m.base == kRipReg) {
    ea += cpu.next_rip;
  } else if (m.base != kNoReg) {
    ea += cpu.gpr[m.base];
  }
  if (m.index != kNoReg) ea += cpu.gpr[m.index] * m.scale;
  return ea & address_mask(insn.addrsize);
}

// Memory operands (and the rare kinds) leave the inlined fast path.
[[gnu::noinline]] inline uint64_t read_op_memory(Cpu& cpu, const Insn& insn, int i) {
  const Operand& o = insn.op[i];
  if (o.kind != OpKind::kMem) return 0;
  return read_mem_n(cpu, insn.mem.seg, effective_address(cpu, insn), o.size);
}

[[gnu::always_inline]] inline uint64_t read_op(Cpu& cpu, const Insn& insn, int i) {
  const Operand& o = insn.op[i];
  if (__builtin_expect(o.kind == OpKind::kReg, 1)) return get_reg(cpu, o.reg, o.size, o.high8);
  if (o.kind == OpKind::kImm) return insn.imm & size_mask(o.size);
  return read_op_memory(cpu, insn, i);
}

[[gnu::noinline]] inline void write_op_memory(Cpu& cpu, const Insn& insn, int i, uint64_t value) {
  write_mem_n(cpu, insn.mem.seg, effective_address(cpu, insn), insn.op[i].size, value);
}

[[gnu::always_inline]] inline void write_op(Cpu& cpu, const Insn& insn, int i, uint64_t value) {
  const Operand& o = insn.op[i];
  if (__builtin_expect(o.kind == OpKind::kReg, 1)) {
    set_reg(cpu, o.reg, o.size, value, o.high8);
  } else {
    write_op_memory(cpu, insn, i, value);
  }
}

// Stack: push/pop with the current stack size (SS.B / 64-bit mode).
inline uint64_t stack_mask(const Cpu& cpu) { return size_mask(cpu.stack_size); }

inline void push(Cpu& cpu, unsigned size, uint64_t value) {
  const uint64_t mask = stack_mask(cpu);
  const uint64_t sp = (cpu.gpr[4] - size) & mask;
  write_mem_n(cpu, kSs, sp, size, value);
  cpu.gpr[4] = (cpu.gpr[4] & ~mask) | sp;
}

inline uint64_t pop(Cpu& cpu, unsigned size) {
  const uint64_t mask = stack_mask(cpu);
  uint64_t v = read_mem_n(cpu, kSs, cpu.gpr[4] & mask, size);
  cpu.gpr[4] = (cpu.gpr[4] & ~mask) | ((cpu.gpr[4] + size) & mask);
  return v;
}

// Reads the value `index` slots above the stack top without popping.
inline uint64_t stack_peek(Cpu& cpu, unsigned size, uint64_t offset) {
  return read_mem_n(cpu, kSs, (cpu.gpr[4] + offset) & stack_mask(cpu), size);
}

inline void set_rsp_offset(Cpu& cpu, int64_t delta) {
  const uint64_t mask = stack_mask(cpu);
  cpu.gpr[4] = (cpu.gpr[4] & ~mask) | ((cpu.gpr[4] + delta) & mask);
}

// Branch target in the current code size (IP/EIP wrap; RIP must be canonical).
inline void branch_to(Cpu& cpu, uint64_t target, unsigned opsize) {
  if (cpu.mode64) {
    if (opsize != 8) target &= size_mask(opsize);
    if (!is_canonical(target)) raise(kGp, 0);
  } else {
    target &= size_mask(opsize);
    if (target > cpu.seg[kCs].limit) raise(kGp, 0);
  }
  cpu.next_rip = target;
}

}  // namespace hostvisor::emu
