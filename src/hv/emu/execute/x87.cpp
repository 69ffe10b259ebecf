// x87 FPU: the arithmetic, load/store, compare and transcendental
// instructions run on the host FPU under the guest's state (x87_host.h);
// the control instructions that deal with the environment layout or the
// CPU mode (FNINIT, FNCLEX, FLDCW/FNSTCW, FNSTSW, FLDENV/FNSTENV,
// FRSTOR/FNSAVE, FWAIT), MXCSR loads/stores and FXSAVE/FXRSTOR are done here
// in software.
#include <cstring>

#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/operands.h"
#include "hv/emu/execute/x87_host.h"
#include "hv/emu/execute/x87_state.h"

namespace hostvisor::emu {
namespace {

constexpr uint64_t kCr4Osfxsr = 1ull << 9;

// Non-waiting control instructions check only for a disabled FPU.
void check_x87_enabled(const Cpu& cpu) {
  if (cpu.cr0 & (kCr0Em | kCr0Ts)) raise(kNm);
}

void check_fxsr(const Cpu& cpu) {
  if (cpu.cr0 & kCr0Em) raise(kUd);
  if (cpu.cr0 & kCr0Ts) raise(kNm);
}

uint64_t aligned_area(Cpu& cpu, const Insn& insn) {
  const uint64_t ea = effective_address(cpu, insn);
  if ((ea + (cpu.mode64 ? 0 : cpu.seg[insn.mem.seg].base)) % 16) raise(kGp, 0);
  return ea;
}

bool real_mode(const Cpu& cpu) { return !(cpu.cr0 & 1); }

// Memory blocks (the environment and save areas) in pieces of T: 16-bit
// pieces for the x87 areas, whose length is only even, 64-bit ones for the
// FXSAVE area. Every access is checked before anything is written.
template <typename T>
void read_block(Cpu& cpu, const Insn& insn, uint64_t ea, uint8_t* out, unsigned length) {
  for (unsigned off = 0; off < length; off += sizeof(T)) {
    const T v = read_mem<T>(cpu, insn.mem.seg, (ea + off) & address_mask(insn.addrsize));
    std::memcpy(out + off, &v, sizeof(T));
  }
}

template <typename T>
void write_block(Cpu& cpu, const Insn& insn, uint64_t ea, const uint8_t* in, unsigned length) {
  probe_write(cpu, insn.mem.seg, ea, sizeof(T));
  probe_write(cpu, insn.mem.seg, (ea + length - sizeof(T)) & address_mask(insn.addrsize), sizeof(T));
  for (unsigned off = 0; off < length; off += sizeof(T)) {
    T v;
    std::memcpy(&v, in + off, sizeof(T));
    write_mem<T>(cpu, insn.mem.seg, (ea + off) & address_mask(insn.addrsize), v);
  }
}

// The FSTENV/FLDENV environment: 14 bytes (16-bit operand size) or 28
// (32-bit), in the real-mode layout (20/32-bit linear pointers and the
// opcode) or the protected-mode one (offsets and selectors). In real mode
// the emulator records FIP/FDP as linear addresses, see record_pointers().
unsigned environment_size(const Insn& insn) { return insn.opsize == 2 ? 14 : 28; }

void store_environment(const Cpu& cpu, const Insn& insn, uint8_t* out) {
  const X87State& x = cpu.x87;
  const uint16_t tw = x87_full_tag_word(x);
  if (environment_size(insn) == 14) {
    uint16_t w[7];
    w[0] = x.fcw;
    w[1] = x.fsw;
    w[2] = tw;
    if (real_mode(cpu)) {
      w[3] = static_cast<uint16_t>(x.fip);
      w[4] = static_cast<uint16_t>(((x.fip >> 16) & 0xf) << 12 | (x.fop & 0x7ff));
      w[5] = static_cast<uint16_t>(x.fdp);
      w[6] = static_cast<uint16_t>(((x.fdp >> 16) & 0xf) << 12);
    } else {
      w[3] = static_cast<uint16_t>(x.fip);
      w[4] = x.fcs;
      w[5] = static_cast<uint16_t>(x.fdp);
      w[6] = x.fds;
    }
    std::memcpy(out, w, 14);
    return;
  }
  uint32_t d[7];
  d[0] = 0xffff0000u | x.fcw;
  d[1] = 0xffff0000u | x.fsw;
  d[2] = 0xffff0000u | tw;
  if (real_mode(cpu)) {
    d[3] = 0xffff0000u | static_cast<uint16_t>(x.fip);
    d[4] = static_cast<uint32_t>(((x.fip >> 16) & 0xffff) << 12) | (x.fop & 0x7ff);
    d[5] = 0xffff0000u | static_cast<uint16_t>(x.fdp);
    d[6] = static_cast<uint32_t>(((x.fdp >> 16) & 0xffff) << 12);
  } else {
    d[3] = static_cast<uint32_t>(x.fip);
    d[4] = x.fcs | static_cast<uint32_t>(x.fop & 0x7ff) << 16;
    d[5] = static_cast<uint32_t>(x.fdp);
    d[6] = 0xffff0000u | x.fds;
  }
  std::memcpy(out, d, 28);
}

// Loads the environment into `x`; the registers are untouched. The tag word
// keeps only empty / not empty (the processor derives the rest from the
// register contents).
void load_environment(const Cpu& cpu, const Insn& insn, const uint8_t* in, X87State& x) {
  if (environment_size(insn) == 14) {
    uint16_t w[7];
    std::memcpy(w, in, 14);
    x.fcw = w[0];
    x.fsw = w[1];
    x.ftw = x87_abridged_tag_word(w[2]);
    if (real_mode(cpu)) {
      x.fip = w[3] | (static_cast<uint64_t>(w[4] >> 12) << 16);
      x.fop = w[4] & 0x7ff;
      x.fdp = w[5] | (static_cast<uint64_t>(w[6] >> 12) << 16);
    } else {
      x.fip = w[3];
      x.fcs = w[4];
      x.fdp = w[5];
      x.fds = w[6];
    }
  } else {
    uint32_t d[7];
    std::memcpy(d, in, 28);
    x.fcw = static_cast<uint16_t>(d[0]);
    x.fsw = static_cast<uint16_t>(d[1]);
    x.ftw = x87_abridged_tag_word(static_cast<uint16_t>(d[2]));
    if (real_mode(cpu)) {
      x.fip = (d[3] & 0xffff) | (static_cast<uint64_t>((d[4] >> 12) & 0xffff) << 16);
      x.fop = d[4] & 0x7ff;
      x.fdp = (d[5] & 0xffff) | (static_cast<uint64_t>((d[6] >> 12) & 0xffff) << 16);
    } else {
      x.fip = d[3];
      x.fcs = static_cast<uint16_t>(d[4]);
      x.fop = (d[4] >> 16) & 0x7ff;
      x.fdp = d[5];
      x.fds = static_cast<uint16_t>(d[6]);
    }
  }
  x.fcw = (x.fcw & 0x1f3f) | 0x40;
  x87_update_summary(x);
}

void initialize(X87State& x) {
  x.fcw = 0x37f;
  x.fsw = 0;
  x.ftw = 0;
  x.fop = 0;
  x.fip = x.fdp = 0;
  x.fcs = x.fds = 0;
}

// FIP/FCS (and FDP/FDS for a memory operand) of the last non-control
// instruction: offsets and selectors in protected mode, linear addresses in
// real mode (the real-mode environment layout stores those).
void record_pointers(Cpu& cpu, const Insn& insn, bool memory, uint64_t ea, uint16_t fop) {
  X87State& x = cpu.x87;
  x.fop = fop & 0x7ff;
  x.fcs = cpu.seg[kCs].selector;
  x.fip = real_mode(cpu) ? (cpu.seg[kCs].base + cpu.rip) & 0xfffff : cpu.rip;
  if (memory) {
    x.fds = cpu.seg[insn.mem.seg].selector;
    x.fdp = real_mode(cpu) ? (cpu.seg[insn.mem.seg].base + ea) & 0xfffff : ea;
  }
}

}  // namespace

// Every x87 instruction without a software handler: the operands come from
// guest memory into a host buffer, the host FPU executes the instruction's
// own opcode and ModRM, and a store goes back to guest memory unless an
// unmasked exception suppressed it.
void h_x87(Cpu& cpu, const Insn& insn) {
  x87_check_waiting(cpu);
  const uint8_t opcode = static_cast<uint8_t>(insn.imm >> 8);
  const uint8_t modrm = static_cast<uint8_t>(insn.imm);
  const bool memory = modrm < 0xc0;
  const bool store = insn.cc & kX87Store;
  // Room for the largest x87 memory image (FNSAVE's 108 bytes) although only
  // operands of up to 10 bytes get here: the environment forms are software.
  alignas(16) uint8_t buffer[112] = {};
  unsigned size = 0;
  uint64_t ea = 0;
  if (memory) {
    for (unsigned i = 0; i < insn.nops; ++i) {
      if (insn.op[i].kind == OpKind::kMem) size = insn.op[i].size;
    }
    if (size == 0 || size > 10) throw EmulationFailure{"x87 memory operand of an unexpected size"};
    ea = effective_address(cpu, insn);
    const uint64_t mask = address_mask(insn.addrsize);
    if (store) {
      probe_write(cpu, insn.mem.seg, ea, size);
    } else if (size == 10) {
      const uint64_t lo = read_mem<uint64_t>(cpu, insn.mem.seg, ea);
      const uint16_t hi = read_mem<uint16_t>(cpu, insn.mem.seg, (ea + 8) & mask);
      std::memcpy(buffer, &lo, 8);
      std::memcpy(buffer + 8, &hi, 2);
    } else {
      const uint64_t v = read_mem_n(cpu, insn.mem.seg, ea, size);
      std::memcpy(buffer, &v, size);
    }
  }
  X87State& x = cpu.x87;
  // An exception still pending here was let through with CR0.NE=0: hide it
  // from the host (it would raise #MF there) and keep it pending afterwards.
  // ES and B are hidden as well and stay set: only FNCLEX, FNINIT and the
  // environment loads clear them.
  const uint16_t pending = x.fsw & ~x.fcw & kFswExceptions;
  const uint16_t summary = x.fsw & (kFswEs | kFswB);
  X87State in = x;
  in.fsw = static_cast<uint16_t>(in.fsw & ~(pending | kFswEs | kFswB));
  FsaveImage image = x87_to_fsave(in);
  uint64_t rflags = read_flags(cpu);
  x87_host_execute(image, opcode, memory ? static_cast<uint8_t>((modrm & 0x38) | 7) : modrm, buffer, rflags);
  X87State out = x;
  x87_registers_from_fsave(out, image);
  const uint16_t unmasked = out.fsw & ~out.fcw & (kFswIe | kFswDe | kFswZe | kFswOe | kFswUe);
  if (store && !unmasked) {
    if (size == 10) {
      uint64_t lo;
      uint16_t hi;
      std::memcpy(&lo, buffer, 8);
      std::memcpy(&hi, buffer + 8, 2);
      write_mem<uint64_t>(cpu, insn.mem.seg, ea, lo);
      write_mem<uint16_t>(cpu, insn.mem.seg, (ea + 8) & address_mask(insn.addrsize), hi);
    } else {
      uint64_t v = 0;
      std::memcpy(&v, buffer, size);
      write_mem_n(cpu, insn.mem.seg, ea, size, v);
    }
  }
  out.fsw |= pending | summary;
  x = out;
  record_pointers(cpu, insn, memory, ea, static_cast<uint16_t>(((opcode & 7) << 8) | modrm));
  if (insn.cc & kX87SetsFlags) set_arith_flags(cpu, rflags & kArithFlags);
}

// FNENI/FNDISI/FNSETPM: no-ops since the 80387.
void h_x87_nop(Cpu& cpu, const Insn&) { check_x87_enabled(cpu); }

void h_fninit(Cpu& cpu, const Insn&) {
  check_x87_enabled(cpu);
  initialize(cpu.x87);
}

void h_fnstsw(Cpu& cpu, const Insn& insn) {
  check_x87_enabled(cpu);
  if (insn.op[0].kind == OpKind::kReg) {
    set_reg(cpu, insn.op[0].reg, 2, cpu.x87.fsw);
  } else {
    write_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn), cpu.x87.fsw);
  }
}

void h_fnstcw(Cpu& cpu, const Insn& insn) {
  check_x87_enabled(cpu);
  write_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn), cpu.x87.fcw);
}

void h_fldcw(Cpu& cpu, const Insn& insn) {
  x87_check_waiting(cpu);
  // Bits 6 (reads as 1), 7 and 13-15 are reserved.
  cpu.x87.fcw = (read_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn)) & 0x1f3f) | 0x40;
  x87_update_summary(cpu.x87);
}

void h_fnclex(Cpu& cpu, const Insn&) {
  check_x87_enabled(cpu);
  cpu.x87.fsw &= 0x7f00;
}

void h_fwait(Cpu& cpu, const Insn&) {
  if ((cpu.cr0 & x86::kCr0Mp) && (cpu.cr0 & kCr0Ts)) raise(kNm);
  if (x87_exception_pending(cpu.x87) && (cpu.cr0 & x86::kCr0Ne)) raise(kMf);
}

void h_fnstenv(Cpu& cpu, const Insn& insn) {
  check_x87_enabled(cpu);
  uint8_t env[28];
  store_environment(cpu, insn, env);
  write_block<uint16_t>(cpu, insn, effective_address(cpu, insn), env, environment_size(insn));
  cpu.x87.fcw |= kFswExceptions;  // FNSTENV masks every exception after storing
}

void h_fldenv(Cpu& cpu, const Insn& insn) {
  x87_check_waiting(cpu);
  uint8_t env[28];
  read_block<uint16_t>(cpu, insn, effective_address(cpu, insn), env, environment_size(insn));
  load_environment(cpu, insn, env, cpu.x87);
}

void h_fnsave(Cpu& cpu, const Insn& insn) {
  check_x87_enabled(cpu);
  const unsigned env_size = environment_size(insn);
  uint8_t area[108];
  store_environment(cpu, insn, area);
  const unsigned top = x87_top(cpu.x87);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(area + env_size + 10 * i, cpu.x87.st[(top + i) & 7], 10);
  write_block<uint16_t>(cpu, insn, effective_address(cpu, insn), area, env_size + 80);
  initialize(cpu.x87);
}

void h_frstor(Cpu& cpu, const Insn& insn) {
  x87_check_waiting(cpu);
  const unsigned env_size = environment_size(insn);
  uint8_t area[108];
  read_block<uint16_t>(cpu, insn, effective_address(cpu, insn), area, env_size + 80);
  X87State x = cpu.x87;
  load_environment(cpu, insn, area, x);
  const unsigned top = x87_top(x);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(x.st[(top + i) & 7], area + env_size + 10 * i, 10);
  cpu.x87 = x;
}

void h_ldmxcsr(Cpu& cpu, const Insn& insn) {
  check_fxsr(cpu);
  if (!(cpu.cr4 & kCr4Osfxsr)) raise(kUd);
  const uint32_t v = read_mem<uint32_t>(cpu, insn.mem.seg, effective_address(cpu, insn));
  if (v & ~mxcsr_writable_bits()) raise(kGp, 0);
  cpu.mxcsr = v;
}

void h_stmxcsr(Cpu& cpu, const Insn& insn) {
  check_fxsr(cpu);
  if (!(cpu.cr4 & kCr4Osfxsr)) raise(kUd);
  write_mem<uint32_t>(cpu, insn.mem.seg, effective_address(cpu, insn), cpu.mxcsr);
}

void h_fxsave(Cpu& cpu, const Insn& insn) {
  check_fxsr(cpu);
  const uint64_t ea = aligned_area(cpu, insn);
  uint8_t area[416] = {};
  const X87State& x = cpu.x87;
  std::memcpy(area + 0, &x.fcw, 2);
  std::memcpy(area + 2, &x.fsw, 2);
  area[4] = x.ftw;
  std::memcpy(area + 6, &x.fop, 2);
  if (insn.opsize == 8) {
    std::memcpy(area + 8, &x.fip, 8);
    std::memcpy(area + 16, &x.fdp, 8);
  } else {
    const uint32_t fip = static_cast<uint32_t>(x.fip), fdp = static_cast<uint32_t>(x.fdp);
    std::memcpy(area + 8, &fip, 4);
    std::memcpy(area + 12, &x.fcs, 2);
    std::memcpy(area + 16, &fdp, 4);
    std::memcpy(area + 20, &x.fds, 2);
  }
  std::memcpy(area + 24, &cpu.mxcsr, 4);
  const uint32_t mask = mxcsr_writable_bits();
  std::memcpy(area + 28, &mask, 4);
  const unsigned top = x87_top(x);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(area + 32 + 16 * i, x.st[(top + i) & 7], 10);
  const int xmm_count = cpu.mode64 ? 16 : 8;
  if (cpu.cr4 & kCr4Osfxsr) {
    for (int i = 0; i < xmm_count; ++i) std::memcpy(area + 160 + 16 * i, cpu.xmm[i], 16);
  }
  const unsigned length = 160 + 16 * xmm_count;
  write_block<uint64_t>(cpu, insn, ea, area, length);
}

void h_fxrstor(Cpu& cpu, const Insn& insn) {
  check_fxsr(cpu);
  const uint64_t ea = aligned_area(cpu, insn);
  const int xmm_count = cpu.mode64 ? 16 : 8;
  const unsigned length = 160 + 16 * xmm_count;
  uint8_t area[416];
  read_block<uint64_t>(cpu, insn, ea, area, length);
  uint32_t mxcsr;
  std::memcpy(&mxcsr, area + 24, 4);
  if ((cpu.cr4 & kCr4Osfxsr) && (mxcsr & ~mxcsr_writable_bits())) raise(kGp, 0);
  X87State x = cpu.x87;
  std::memcpy(&x.fcw, area + 0, 2);
  std::memcpy(&x.fsw, area + 2, 2);
  x.ftw = area[4];
  std::memcpy(&x.fop, area + 6, 2);
  x.fop &= 0x7ff;
  if (insn.opsize == 8) {
    std::memcpy(&x.fip, area + 8, 8);
    std::memcpy(&x.fdp, area + 16, 8);
  } else {
    uint32_t fip, fdp;
    std::memcpy(&fip, area + 8, 4);
    std::memcpy(&x.fcs, area + 12, 2);
    std::memcpy(&fdp, area + 16, 4);
    std::memcpy(&x.fds, area + 20, 2);
    x.fip = fip;
    x.fdp = fdp;
  }
  const unsigned top = x87_top(x);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(x.st[(top + i) & 7], area + 32 + 16 * i, 10);
  x.fcw = (x.fcw & 0x1f3f) | 0x40;
  x87_update_summary(x);
  cpu.x87 = x;
  if (cpu.cr4 & kCr4Osfxsr) {
    cpu.mxcsr = mxcsr;
    for (int i = 0; i < xmm_count; ++i) std::memcpy(cpu.xmm[i], area + 160 + 16 * i, 16);
  }
}

}  // namespace hostvisor::emu
