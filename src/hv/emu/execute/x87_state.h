// The x87 FPU / MMX register file as the handlers see it: status and control
// word fields, the checks every waiting FP instruction makes (#NM, pending
// unmasked exceptions -> #MF), the FSAVE image (the 32-bit protected-mode
// layout the host FPU is driven with, see x87_host.h) and the MMX aliasing
// of the x87 registers.
#pragma once

#include <cstdint>
#include <cstring>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

// Status word.
constexpr uint16_t kFswIe = 1u << 0, kFswDe = 1u << 1, kFswZe = 1u << 2, kFswOe = 1u << 3, kFswUe = 1u << 4,
                   kFswPe = 1u << 5, kFswSf = 1u << 6, kFswEs = 1u << 7, kFswC0 = 1u << 8, kFswC1 = 1u << 9,
                   kFswC2 = 1u << 10, kFswC3 = 1u << 14, kFswB = 1u << 15;
constexpr uint16_t kFswExceptions = 0x3f;
constexpr unsigned kFswTopShift = 11;
constexpr uint16_t kFswTop = 7u << kFswTopShift;

// CR0 bits of the FPU (MP and NE are in hv/cpu_state.h).
constexpr uint64_t kCr0Em = 1ull << 2, kCr0Ts = 1ull << 3;

inline unsigned x87_top(const X87State& x) { return (x.fsw >> kFswTopShift) & 7; }
inline void x87_set_top(X87State& x, unsigned top) {
  x.fsw = static_cast<uint16_t>((x.fsw & ~kFswTop) | ((top & 7) << kFswTopShift));
}

// A waiting FP instruction raises #MF when an exception flag is set whose
// exception is unmasked.
inline bool x87_exception_pending(const X87State& x) { return x.fsw & ~x.fcw & kFswExceptions; }

// ES and B summarise the pending exceptions. Loads of the control word or
// the environment (FLDCW, FLDENV, FRSTOR, FXRSTOR) recompute them from the
// flags and masks, as the hardware does.
inline void x87_update_summary(X87State& x) {
  if (x87_exception_pending(x)) {
    x.fsw |= kFswEs | kFswB;
  } else {
    x.fsw &= static_cast<uint16_t>(~(kFswEs | kFswB));
  }
}

// The checks of a waiting x87 instruction (and of MMX instructions): #NM
// when CR0.EM or CR0.TS is set, #MF for a pending unmasked exception when
// CR0.NE=1. With CR0.NE=0 a PC would signal FERR# to the interrupt
// controller; the emulator does not model that line and behaves as if
// IGNNE# were asserted (the instruction runs, the exception stays pending).
inline void x87_check_waiting(const Cpu& cpu) {
  if (cpu.cr0 & (kCr0Em | kCr0Ts)) raise(kNm);
  if (x87_exception_pending(cpu.x87) && (cpu.cr0 & x86::kCr0Ne)) raise(kMf);
}

// The FNSAVE/FRSTOR image in the 32-bit protected-mode layout (108 bytes):
// environment, then ST(0)..ST(7) in stack order.
struct FsaveImage {
  uint8_t b[108];
};

// Tag of one 80-bit register as FSTENV/FSAVE report it: 0 valid, 1 zero,
// 2 special (NaN, infinity, denormal, unsupported), 3 empty.
inline unsigned x87_classify(const uint8_t* r) {
  uint64_t mantissa;
  uint16_t se;
  std::memcpy(&mantissa, r, 8);
  std::memcpy(&se, r + 8, 2);
  const unsigned exponent = se & 0x7fff;
  if (exponent == 0) return mantissa == 0 ? 1 : 2;
  if (exponent == 0x7fff || !(mantissa >> 63)) return 2;
  return 0;
}

// The full 16-bit tag word (per physical register) from the abridged one.
inline uint16_t x87_full_tag_word(const X87State& x) {
  uint16_t tw = 0;
  for (unsigned i = 0; i < 8; ++i) {
    const unsigned tag = (x.ftw >> i) & 1 ? x87_classify(x.st[i]) : 3;
    tw = static_cast<uint16_t>(tw | (tag << (2 * i)));
  }
  return tw;
}

inline uint8_t x87_abridged_tag_word(uint16_t full) {
  uint8_t t = 0;
  for (unsigned i = 0; i < 8; ++i) {
    if (((full >> (2 * i)) & 3) != 3) t = static_cast<uint8_t>(t | (1u << i));
  }
  return t;
}

// Guest state -> FSAVE image (32-bit protected-mode layout).
inline FsaveImage x87_to_fsave(const X87State& x) {
  FsaveImage img{};
  auto put32 = [&](unsigned off, uint32_t v) { std::memcpy(img.b + off, &v, 4); };
  put32(0, 0xffff0000u | x.fcw);
  put32(4, 0xffff0000u | x.fsw);
  put32(8, 0xffff0000u | x87_full_tag_word(x));
  put32(12, static_cast<uint32_t>(x.fip));
  put32(16, x.fcs | (static_cast<uint32_t>(x.fop & 0x7ff) << 16));
  put32(20, static_cast<uint32_t>(x.fdp));
  put32(24, 0xffff0000u | x.fds);
  const unsigned top = x87_top(x);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(img.b + 28 + 10 * i, x.st[(top + i) & 7], 10);
  return img;
}

// FSAVE image -> the register file, status, control and tag words (the
// instruction and data pointers are the caller's business).
inline void x87_registers_from_fsave(X87State& x, const FsaveImage& img) {
  uint16_t fcw, fsw, ftw;
  std::memcpy(&fcw, img.b + 0, 2);
  std::memcpy(&fsw, img.b + 4, 2);
  std::memcpy(&ftw, img.b + 8, 2);
  x.fcw = fcw;
  x.fsw = fsw;
  x.ftw = x87_abridged_tag_word(ftw);
  const unsigned top = x87_top(x);
  for (unsigned i = 0; i < 8; ++i) std::memcpy(x.st[(top + i) & 7], img.b + 28 + 10 * i, 10);
}

// MMX: MMi is the significand of physical register Ri. Every MMX instruction
// sets TOP to 0 and tags all registers valid; a write also sets the
// sign/exponent field to all ones (so the value reads as a NaN to x87 code).
inline void mmx_enter(Cpu& cpu) {
  x87_set_top(cpu.x87, 0);
  cpu.x87.ftw = 0xff;
}
inline uint64_t mmx_read(const Cpu& cpu, unsigned i) {
  uint64_t v;
  std::memcpy(&v, cpu.x87.st[i & 7], 8);
  return v;
}
inline void mmx_write(Cpu& cpu, unsigned i, uint64_t v) {
  std::memcpy(cpu.x87.st[i & 7], &v, 8);
  cpu.x87.st[i & 7][8] = 0xff;
  cpu.x87.st[i & 7][9] = 0xff;
}

}  // namespace hostvisor::emu
