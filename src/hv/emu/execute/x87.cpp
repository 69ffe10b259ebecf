// x87 control and state instructions (FNINIT, FNSTSW, FNSTCW, FLDCW, FNCLEX,
// FWAIT), MXCSR (LDMXCSR, STMXCSR) and FXSAVE/FXRSTOR, so kernels can save
// and restore FPU/SSE state. x87 arithmetic is not emulated yet (#UD).
#include <cstring>

#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/operands.h"

namespace hostvisor::emu {
namespace {

constexpr uint64_t kCr0Mp = 1ull << 1, kCr0Em = 1ull << 2, kCr0Ts = 1ull << 3;
constexpr uint64_t kCr4Osfxsr = 1ull << 9;
constexpr uint32_t kMxcsrMask = 0xffbf;  // no DAZ

void check_x87(const Cpu& cpu) {
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

}  // namespace

void h_fninit(Cpu& cpu, const Insn&) {
  check_x87(cpu);
  cpu.x87 = X87State{};
}

void h_fnstsw(Cpu& cpu, const Insn& insn) {
  check_x87(cpu);
  if (insn.op[0].kind == OpKind::kReg) {
    set_reg(cpu, insn.op[0].reg, 2, cpu.x87.fsw);
  } else {
    write_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn), cpu.x87.fsw);
  }
}

void h_fnstcw(Cpu& cpu, const Insn& insn) {
  check_x87(cpu);
  write_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn), cpu.x87.fcw);
}

void h_fldcw(Cpu& cpu, const Insn& insn) {
  check_x87(cpu);
  cpu.x87.fcw = read_mem<uint16_t>(cpu, insn.mem.seg, effective_address(cpu, insn)) | 0x40;
}

void h_fnclex(Cpu& cpu, const Insn&) {
  check_x87(cpu);
  cpu.x87.fsw &= 0x7f00;
}

void h_fwait(Cpu& cpu, const Insn&) {
  if ((cpu.cr0 & kCr0Mp) && (cpu.cr0 & kCr0Ts)) raise(kNm);
}

void h_ldmxcsr(Cpu& cpu, const Insn& insn) {
  check_fxsr(cpu);
  if (!(cpu.cr4 & kCr4Osfxsr)) raise(kUd);
  const uint32_t v = read_mem<uint32_t>(cpu, insn.mem.seg, effective_address(cpu, insn));
  if (v & ~kMxcsrMask) raise(kGp, 0);
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
    std::memcpy(area + 16, &fdp, 4);
  }
  std::memcpy(area + 24, &cpu.mxcsr, 4);
  const uint32_t mask = kMxcsrMask;
  std::memcpy(area + 28, &mask, 4);
  for (int i = 0; i < 8; ++i) std::memcpy(area + 32 + 16 * i, x.st[i], 10);
  const int xmm_count = cpu.mode64 ? 16 : 8;
  if (cpu.cr4 & kCr4Osfxsr) {
    for (int i = 0; i < xmm_count; ++i) std::memcpy(area + 160 + 16 * i, cpu.xmm[i], 16);
  }
  const unsigned length = 160 + 16 * xmm_count;
  probe_write(cpu, insn.mem.seg, ea, 8);
  probe_write(cpu, insn.mem.seg, (ea + length - 8) & address_mask(insn.addrsize), 8);
  for (unsigned off = 0; off < length; off += 8) {
    uint64_t q;
    std::memcpy(&q, area + off, 8);
    write_mem<uint64_t>(cpu, insn.mem.seg, (ea + off) & address_mask(insn.addrsize), q);
  }
}

void h_fxrstor(Cpu& cpu, const Insn& insn) {
  check_fxsr(cpu);
  const uint64_t ea = aligned_area(cpu, insn);
  const int xmm_count = cpu.mode64 ? 16 : 8;
  const unsigned length = 160 + 16 * xmm_count;
  uint8_t area[416];
  for (unsigned off = 0; off < length; off += 8) {
    const uint64_t q = read_mem<uint64_t>(cpu, insn.mem.seg, (ea + off) & address_mask(insn.addrsize));
    std::memcpy(area + off, &q, 8);
  }
  uint32_t mxcsr;
  std::memcpy(&mxcsr, area + 24, 4);
  if ((cpu.cr4 & kCr4Osfxsr) && (mxcsr & ~kMxcsrMask)) raise(kGp, 0);
  X87State& x = cpu.x87;
  std::memcpy(&x.fcw, area + 0, 2);
  std::memcpy(&x.fsw, area + 2, 2);
  x.ftw = area[4];
  std::memcpy(&x.fop, area + 6, 2);
  if (insn.opsize == 8) {
    std::memcpy(&x.fip, area + 8, 8);
    std::memcpy(&x.fdp, area + 16, 8);
  } else {
    uint32_t fip, fdp;
    std::memcpy(&fip, area + 8, 4);
    std::memcpy(&fdp, area + 16, 4);
    x.fip = fip;
    x.fdp = fdp;
  }
  for (int i = 0; i < 8; ++i) std::memcpy(x.st[i], area + 32 + 16 * i, 10);
  if (cpu.cr4 & kCr4Osfxsr) {
    cpu.mxcsr = mxcsr;
    for (int i = 0; i < xmm_count; ++i) std::memcpy(cpu.xmm[i], area + 160 + 16 * i, 16);
  }
}

}  // namespace hostvisor::emu
