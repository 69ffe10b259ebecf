// A byte buffer with the handful of fixed x86-64 encodings the translator's
// block entry and exit need (the guest's own instructions are copied as they
// are). Registers are numbered as in the encoding: 0 = RAX ... 15 = R15.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <vector>

namespace hostvisor::emu::jit {

class Emitter {
 public:
  void bytes(std::initializer_list<uint8_t> b) { out_.insert(out_.end(), b); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void u32(uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    out_.insert(out_.end(), b, b + 4);
  }
  void push(unsigned reg) {
    if (reg >= 8) out_.push_back(0x41);
    out_.push_back(static_cast<uint8_t>(0x50 + (reg & 7)));
  }
  void pop(unsigned reg) {
    if (reg >= 8) out_.push_back(0x41);
    out_.push_back(static_cast<uint8_t>(0x58 + (reg & 7)));
  }
  // MOV reg, [base + disp32] / MOV [base + disp32], reg (64-bit). `base`
  // must not be RSP or R12, which would need a SIB byte.
  void load(unsigned reg, unsigned base, int32_t disp) { mem_op(0x8b, reg, base, disp); }
  void store(unsigned base, int32_t disp, unsigned reg) { mem_op(0x89, reg, base, disp); }

  const std::vector<uint8_t>& code() const { return out_; }

 private:
  void mem_op(uint8_t opcode, unsigned reg, unsigned base, int32_t disp) {
    out_.push_back(static_cast<uint8_t>(0x48 | (reg >= 8 ? 4 : 0) | (base >= 8 ? 1 : 0)));
    out_.push_back(opcode);
    out_.push_back(static_cast<uint8_t>(0x80 | ((reg & 7) << 3) | (base & 7)));
    u32(static_cast<uint32_t>(disp));
  }
  std::vector<uint8_t> out_;
};

}  // namespace hostvisor::emu::jit
