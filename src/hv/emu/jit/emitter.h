// A byte buffer with the handful of fixed x86-64 encodings the translator's
// block entry, exits and soft-TLB checks need (the guest's own instructions
// are copied as they are). Registers are numbered as in the encoding:
// 0 = RAX ... 15 = R15.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <vector>

namespace hostvisor::emu::jit {

constexpr unsigned kNoBase = 0xff;  // a memory operand without base or index register

class Emitter {
 public:
  void bytes(std::initializer_list<uint8_t> b) { out_.insert(out_.end(), b); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void byte(uint8_t b) { out_.push_back(b); }
  void u32(uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    out_.insert(out_.end(), b, b + 4);
  }
  void u64(uint64_t v) {
    uint8_t b[8];
    std::memcpy(b, &v, 8);
    out_.insert(out_.end(), b, b + 8);
  }
  void push(unsigned reg) {
    if (reg >= 8) out_.push_back(0x41);
    out_.push_back(static_cast<uint8_t>(0x50 + (reg & 7)));
  }
  void pop(unsigned reg) {
    if (reg >= 8) out_.push_back(0x41);
    out_.push_back(static_cast<uint8_t>(0x58 + (reg & 7)));
  }
  // MOV reg, [base + disp] / MOV [base + disp], reg (64-bit); any base, RSP included.
  void load(unsigned reg, unsigned base, int32_t disp) { op_mem(0x8b, reg, base, kNoBase, 1, disp); }
  void store(unsigned base, int32_t disp, unsigned reg) { op_mem(0x89, reg, base, kNoBase, 1, disp); }
  // LEA reg, [base + index*scale + disp] (64-bit); base and index may be kNoBase.
  void lea(unsigned reg, unsigned base, unsigned index, unsigned scale, int32_t disp) {
    op_mem(0x8d, reg, base, index, scale, disp);
  }
  // CMP reg, [base + disp] / ADD reg, [base + disp] (64-bit).
  void cmp_load(unsigned reg, unsigned base, int32_t disp) { op_mem(0x3b, reg, base, kNoBase, 1, disp); }
  void add_load(unsigned reg, unsigned base, int32_t disp) { op_mem(0x03, reg, base, kNoBase, 1, disp); }
  // The same with an index: MOV / CMP reg, [base + index*scale + disp].
  void load_indexed(unsigned reg, unsigned base, unsigned index, unsigned scale, int32_t disp) {
    op_mem(0x8b, reg, base, index, scale, disp);
  }
  void cmp_indexed(unsigned reg, unsigned base, unsigned index, unsigned scale, int32_t disp) {
    op_mem(0x3b, reg, base, index, scale, disp);
  }
  // MOV reg, imm64: as a zero-extended imm32 (B8+r) or a sign-extended one
  // (C7 /0, kernel addresses) when it fits, else the 10-byte form.
  void mov_imm(unsigned reg, uint64_t v) {
    if (v <= 0xffffffffull) {
      if (reg >= 8) out_.push_back(0x41);
      out_.push_back(static_cast<uint8_t>(0xb8 + (reg & 7)));
      u32(static_cast<uint32_t>(v));
    } else if (static_cast<int64_t>(v) == static_cast<int32_t>(v)) {
      rr(0xc7, 0, reg);
      u32(static_cast<uint32_t>(v));
    } else {
      rex(true, 0, 0, reg);
      out_.push_back(static_cast<uint8_t>(0xb8 + (reg & 7)));
      u64(v);
    }
  }
  // ADD qword [base + disp], imm8 / CMP qword [base + disp], imm8 (statistics
  // counters, the instruction count, the chain budget: where the host's
  // flags are not the guest's).
  void add_mem_imm8(unsigned base, int32_t disp, int8_t v) {
    op_mem(0x83, 0, base, kNoBase, 1, disp);
    out_.push_back(static_cast<uint8_t>(v));
  }
  // ADD qword [base + disp], imm (8 or 32 bits, sign-extended): the frame's
  // chain budget.
  void add_mem_imm(unsigned base, int32_t disp, int32_t v) {
    if (v >= -128 && v <= 127) {
      add_mem_imm8(base, disp, static_cast<int8_t>(v));
    } else {
      op_mem(0x81, 0, base, kNoBase, 1, disp);
      u32(static_cast<uint32_t>(v));
    }
  }
  // MOV qword [base + disp], imm32 (sign-extended).
  void store_imm32(unsigned base, int32_t disp, int32_t v) {
    op_mem(0xc7, 0, base, kNoBase, 1, disp);
    u32(static_cast<uint32_t>(v));
  }
  // POP qword [base + disp] (RSP as base: its value after the pop).
  void pop_mem(unsigned base, int32_t disp) { op_mem(0x8f, 0, base, kNoBase, 1, disp); }
  void pushfq() { out_.push_back(0x9c); }
  void cmp_mem_imm8(unsigned base, int32_t disp, int8_t v) {
    op_mem(0x83, 7, base, kNoBase, 1, disp);
    out_.push_back(static_cast<uint8_t>(v));
  }
  // Register-register and register-immediate forms (64-bit).
  void mov_rr(unsigned dst, unsigned src) { rr(0x89, src, dst); }
  void add_rr(unsigned dst, unsigned src) { rr(0x01, src, dst); }
  void test_rr(unsigned a, unsigned b) { rr(0x85, b, a); }
  void xor_rr(unsigned dst, unsigned src) { rr(0x31, src, dst); }
  // PUSH qword [base + disp] (RSP as base: its value before the push).
  void push_mem(unsigned base, int32_t disp) { op_mem(0xff, 6, base, kNoBase, 1, disp); }
  // JMP qword [base + disp] (REX.W is ignored).
  void jmp_mem(unsigned base, int32_t disp) { op_mem(0xff, 4, base, kNoBase, 1, disp); }
  void shr_imm(unsigned reg, uint8_t n) { rr(0xc1, 5, reg), out_.push_back(n); }
  void and_imm(unsigned reg, int32_t v) {
    if (v >= -128 && v <= 127) {
      rr(0x83, 4, reg), out_.push_back(static_cast<uint8_t>(v));
    } else {
      rr(0x81, 4, reg), u32(static_cast<uint32_t>(v));
    }
  }
  void imul_imm(unsigned dst, unsigned src, int32_t v) {
    if (v >= -128 && v <= 127) {
      rr(0x6b, dst, src), out_.push_back(static_cast<uint8_t>(v));
    } else {
      rr(0x69, dst, src), u32(static_cast<uint32_t>(v));
    }
  }
  void shl_imm(unsigned reg, uint8_t n) { rr(0xc1, 4, reg), out_.push_back(n); }
  // Jcc rel32 / JMP rel32 to a label fixed up later: returns where the rel32 is.
  size_t jcc32(uint8_t cc) {
    out_.push_back(0x0f);
    out_.push_back(static_cast<uint8_t>(0x80 | cc));
    const size_t at = out_.size();
    u32(0);
    return at;
  }
  // Points the rel32 at `at` to `target` (both offsets in this buffer).
  void patch_rel32(size_t at, size_t target) {
    const int32_t rel = static_cast<int32_t>(static_cast<int64_t>(target) - static_cast<int64_t>(at + 4));
    std::memcpy(&out_[at], &rel, 4);
  }
  size_t size() const { return out_.size(); }

  const std::vector<uint8_t>& code() const { return out_; }

 // A SIB byte's scale field.
  static uint8_t scale_bits(unsigned scale) { return scale == 8 ? 3 : scale == 4 ? 2 : scale == 2 ? 1 : 0; }

 private:
  void rex(bool w, unsigned r, unsigned x, unsigned b) {
    const uint8_t v = static_cast<uint8_t>(0x40 | (w ? 8 : 0) | (r >= 8 ? 4 : 0) | (x != kNoBase && x >= 8 ? 2 : 0) |
                                           (b != kNoBase && b >= 8 ? 1 : 0));
    out_.push_back(v);
  }
  // opcode with ModRM mod=11: `reg` in the reg field, `rm` in r/m.
  void rr(uint8_t opcode, unsigned reg, unsigned rm) {
    rex(true, reg, kNoBase, rm);
    out_.push_back(opcode);
    out_.push_back(static_cast<uint8_t>(0xc0 | ((reg & 7) << 3) | (rm & 7)));
  }
  // The shortest ModRM form: no SIB byte unless the base is RSP/R12 or
  // there is an index, no displacement when it is 0 (but for RBP/R13,
  // which need one), else 8 bits when it fits: most of the translator's
  // loads and stores are Cpu fields and frame slots, so this is most of
  // its code size.
  void op_mem(uint8_t opcode, unsigned reg, unsigned base, unsigned index, unsigned scale, int32_t disp) {
    rex(true, reg, index, base);
    out_.push_back(opcode);
    const uint8_t r = static_cast<uint8_t>((reg & 7) << 3);
    if (base == kNoBase) {
      // mod=00 with SIB base 101: disp32, no base.
      out_.push_back(static_cast<uint8_t>(r | 4));
      out_.push_back(static_cast<uint8_t>((scale_bits(scale) << 6) | ((index == kNoBase ? 4 : (index & 7)) << 3) | 5));
      u32(static_cast<uint32_t>(disp));
      return;
    }
    const uint8_t mod = disp == 0 && (base & 7) != 5 ? 0x00 : (disp >= -128 && disp <= 127) ? 0x40 : 0x80;
    if (index == kNoBase && (base & 7) != 4) {
      out_.push_back(static_cast<uint8_t>(mod | r | (base & 7)));
    } else {
      out_.push_back(static_cast<uint8_t>(mod | r | 4));
      out_.push_back(
          static_cast<uint8_t>((scale_bits(scale) << 6) | ((index == kNoBase ? 4 : (index & 7)) << 3) | (base & 7)));
    }
    if (mod == 0x40) out_.push_back(static_cast<uint8_t>(static_cast<int8_t>(disp)));
    if (mod == 0x80) u32(static_cast<uint32_t>(disp));
  }
  std::vector<uint8_t> out_;
};

}  // namespace hostvisor::emu::jit
