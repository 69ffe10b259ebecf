// Decoding: Zydis decodes each instruction once into a compact Insn record
// carrying the handler that executes it; the interpreter never looks at
// instruction bytes again until the block is invalidated.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

struct Insn;
using Handler = void (*)(Cpu& cpu, const Insn& insn);

constexpr uint8_t kNoReg = 0xff;
constexpr uint8_t kRipReg = 0xfe;

enum class OpKind : uint8_t { kNone, kReg, kMem, kImm, kSreg, kCr, kDr, kXmm, kMmx, kSt, kOther };

struct Operand {
  OpKind kind = OpKind::kNone;
  uint8_t size = 0;    // bytes
  uint8_t reg = 0;     // GPR 0-15; segment, control or debug register number
  bool high8 = false;  // AH, CH, DH, BH
};

// The effective address of the (single) explicit memory operand.
struct MemRef {
  int64_t disp = 0;
  uint8_t seg = kDs;
  uint8_t base = kNoReg;  // GPR, kRipReg or kNoReg
  uint8_t index = kNoReg;
  uint8_t scale = 1;
};

enum Prefix : uint8_t { kPrefixRep = 1, kPrefixRepne = 2, kPrefixLock = 4, kPrefixSegOverride = 8 };

struct Insn {
  Handler fn = nullptr;
  uint64_t imm = 0;   // first immediate, sign-extended to 64 bits where the encoding says so
  uint64_t imm2 = 0;  // second immediate (ENTER level, far pointer selector)
  MemRef mem;
  Operand op[3];
  uint16_t mnemonic = 0;  // ZydisMnemonic, for messages
  uint8_t len = 0;
  uint8_t opsize = 4;    // operand size in bytes
  uint8_t addrsize = 4;  // address size in bytes
  uint8_t prefixes = 0;
  uint8_t cc = 0;    // condition code or other per-handler detail
  uint8_t nops = 0;  // explicit operand count
  bool ends_block = false;
};

// Per-mode Zydis decoders.
class Decoder {
 public:
  Decoder();
  // Decodes one instruction from `bytes` for a CPU whose default code size is
  // `code_size` (2, 4, 8; `real` for real mode). On ZYDIS failure returns the
  // Zydis status; `insn` then is #UD (or needs more bytes: kNeedMoreBytes).
  enum class Status { kOk, kInvalid, kNeedMoreBytes };
  Status decode(const uint8_t* bytes, size_t length, unsigned code_size, bool real, Insn& insn) const;

 private:
  ZydisDecoder d16_, d32_, d64_, real_;
};

}  // namespace hostvisor::emu
