// Shared by the SSE/SSE2 and MMX handlers: 128-bit values, the register
// files (XMM, and MMX aliasing the x87 registers), memory operands with the
// SSE alignment rule, and the CR0/CR4 checks of each register file.
#pragma once

#include <cstdint>
#include <cstring>

#include "hv/emu/execute/operands.h"
#include "hv/emu/execute/x87_state.h"

namespace hostvisor::emu {

constexpr uint64_t kCr4Osfxsr = 1ull << 9;

struct V128 {
  uint8_t b[16];
};

inline void check_sse(const Cpu& cpu) {
  if ((cpu.cr0 & kCr0Em) || !(cpu.cr4 & kCr4Osfxsr)) raise(kUd);
  if (cpu.cr0 & kCr0Ts) raise(kNm);
}

// MMX instructions are x87 instructions as far as the checks go: #UD with
// CR0.EM, #NM with CR0.TS, #MF for a pending x87 exception.
inline void check_mmx(const Cpu& cpu) {
  if (cpu.cr0 & kCr0Em) raise(kUd);
  if (cpu.cr0 & kCr0Ts) raise(kNm);
  if (x87_exception_pending(cpu.x87) && (cpu.cr0 & x86::kCr0Ne)) raise(kMf);
}

inline bool uses_mmx(const Insn& insn) { return insn.op[0].kind == OpKind::kMmx || insn.op[1].kind == OpKind::kMmx; }

// The checks for the instruction's register file (an MMX form of an
// SSE/SSE2 integer instruction is an MMX instruction).
inline void check_simd(const Cpu& cpu, const Insn& insn) {
  if (uses_mmx(insn)) {
    check_mmx(cpu);
  } else {
    check_sse(cpu);
  }
}

// Vector width of the destination: 8 bytes for MMX, 16 for XMM.
inline unsigned width(const Insn& insn) { return insn.op[0].kind == OpKind::kMmx ? 8 : 16; }

inline V128 load_xmm(const Cpu& cpu, unsigned reg) {
  V128 v;
  std::memcpy(v.b, cpu.xmm[reg], 16);
  return v;
}

inline void store_xmm(Cpu& cpu, unsigned reg, const V128& v) { std::memcpy(cpu.xmm[reg], v.b, 16); }

// A register operand, XMM or MMX (in the low 8 bytes).
inline V128 load_reg(const Cpu& cpu, const Operand& o) {
  if (o.kind == OpKind::kXmm) return load_xmm(cpu, o.reg);
  V128 v{};
  const uint64_t x = mmx_read(cpu, o.reg);
  std::memcpy(v.b, &x, 8);
  return v;
}

// Writing an MMX register also switches the x87 unit to MMX mode (TOP=0, all tags valid).
inline void store_reg(Cpu& cpu, const Operand& o, const V128& v) {
  if (o.kind == OpKind::kXmm) {
    store_xmm(cpu, o.reg, v);
    return;
  }
  uint64_t x;
  std::memcpy(&x, v.b, 8);
  mmx_write(cpu, o.reg, x);
  mmx_enter(cpu);
}

// After an MMX instruction that writes no MMX register (to memory or a GPR).
inline void finish(Cpu& cpu, const Insn& insn) {
  if (uses_mmx(insn)) mmx_enter(cpu);
}

// Reads `size` bytes (16, 8 or 4) of a memory operand; legacy SSE requires
// 16-byte alignment for full-width operands of most instructions.
inline V128 load_memory(Cpu& cpu, const Insn& insn, unsigned size, bool aligned) {
  const uint64_t ea = effective_address(cpu, insn);
  if (aligned && size == 16 && (ea + cpu.seg[insn.mem.seg].base * !cpu.mode64) % 16) raise(kGp, 0);
  V128 v{};
  if (size == 16) {
    const uint64_t lo = read_mem<uint64_t>(cpu, insn.mem.seg, ea);
    const uint64_t hi = read_mem<uint64_t>(cpu, insn.mem.seg, (ea + 8) & address_mask(insn.addrsize));
    std::memcpy(v.b, &lo, 8);
    std::memcpy(v.b + 8, &hi, 8);
  } else {
    const uint64_t x = read_mem_n(cpu, insn.mem.seg, ea, size);
    std::memcpy(v.b, &x, size);
  }
  return v;
}

inline void store_memory(Cpu& cpu, const Insn& insn, const V128& v, unsigned size, bool aligned) {
  const uint64_t ea = effective_address(cpu, insn);
  if (aligned && size == 16 && (ea + cpu.seg[insn.mem.seg].base * !cpu.mode64) % 16) raise(kGp, 0);
  if (size == 16) {
    probe_write(cpu, insn.mem.seg, ea, 16);
    uint64_t lo, hi;
    std::memcpy(&lo, v.b, 8);
    std::memcpy(&hi, v.b + 8, 8);
    write_mem<uint64_t>(cpu, insn.mem.seg, ea, lo);
    write_mem<uint64_t>(cpu, insn.mem.seg, (ea + 8) & address_mask(insn.addrsize), hi);
  } else {
    uint64_t x = 0;
    std::memcpy(&x, v.b, size);
    write_mem_n(cpu, insn.mem.seg, ea, size, x);
  }
}

// Operand i as a vector: an XMM register or memory of the operand's size.
inline V128 source(Cpu& cpu, const Insn& insn, int i, bool aligned = true) {
  const Operand& o = insn.op[i];
  if (o.kind == OpKind::kXmm || o.kind == OpKind::kMmx) return load_reg(cpu, o);
  if (o.kind == OpKind::kMem) return load_memory(cpu, insn, o.size ? o.size : 16, aligned);
  V128 v{};
  const uint64_t x = o.kind == OpKind::kReg ? get_reg(cpu, o.reg, o.size) : insn.imm;
  std::memcpy(v.b, &x, 8);
  return v;
}

template <typename T>
inline T lane(const V128& v, unsigned i) {
  T x;
  std::memcpy(&x, v.b + i * sizeof(T), sizeof(T));
  return x;
}
template <typename T>
inline void set_lane(V128& v, unsigned i, T x) {
  std::memcpy(v.b + i * sizeof(T), &x, sizeof(T));
}

}  // namespace hostvisor::emu
