// Fuzz target: the translating tier against the interpreter. The input
// becomes a counted loop of random instructions (register ALU, INC/DEC,
// shifts by an immediate, LEA, MOV of immediates, loads and stores through
// R14 near a page boundary with a non-present page after it (and with R15,
// the loop counter, as an index, or R15 alone with a disp32), CMOVcc, SETcc,
// ADC/SBB, the sign extensions of RAX, XCHG, NOPs, PUSH/POP, CALL and RET,
// RSP as a register operand, DIV/IDIV (a zero divisor and overflows too),
// LOCK CMPXCHG/XADD and XCHG with memory, aligned or not, and their
// register forms, PUSHFQ, CLI/STI, MOVS/STOS with and without REP near the page
// boundary (DF set by STD now and then, cleared by CLD), forward Jcc on ZF/CF/SF), long enough that its blocks get hot
// and translated. The program runs on two machines, one with a Translator; the registers, the defined flags, RIP, CR2,
// the exception taken, the instruction count and the data memory must agree, or the target aborts with the first
// difference.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "hv/emu/flags.h"
#include "hv/emu/jit/translator.h"
#include "hv/emu/testing/test_machine.h"

using hostvisor::emu::Cpu;
using hostvisor::emu::Interpreter;
using hostvisor::emu::testing::TestMachine;
namespace emu = hostvisor::emu;

namespace {

// R14 is the memory base, R15 the loop counter, RSP the stack: the rest are random operands.
constexpr uint8_t kOperandRegs[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13};
constexpr uint64_t kMissingPage = TestMachine::kData + 0x2000;

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | byte();
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

uint8_t reg(uint8_t b) { return kOperandRegs[b % sizeof(kOperandRegs)]; }
uint8_t rex(bool w, unsigned r, unsigned x, unsigned b) {
  return static_cast<uint8_t>(0x40 | (w ? 8 : 0) | (r >= 8 ? 4 : 0) | (x >= 8 ? 2 : 0) | (b >= 8 ? 1 : 0));
}
uint8_t modrm(unsigned mod, unsigned r, unsigned rm) {
  return static_cast<uint8_t>(mod << 6 | (r & 7) << 3 | (rm & 7));
}
uint8_t sib(unsigned scale_bits, unsigned index, unsigned base) {
  return static_cast<uint8_t>(scale_bits << 6 | (index & 7) << 3 | (base & 7));
}

// One random instruction; *is_branch says it is a Jcc whose rel8 the caller patches.
std::vector<uint8_t> instruction(Input& in, bool* is_branch) {
  *is_branch = false;
  const uint8_t kind = in.byte();
  const uint8_t a = in.byte();
  const uint8_t b = in.byte();
  const bool w = kind & 0x80;
  const unsigned r1 = reg(a), r2 = reg(b), r3 = reg(a >> 4);
  // Conditions on CF, ZF, SF and PF only: the others may be undefined (and
  // differ between the host and the reference) after some instructions here.
  static constexpr uint8_t kDefinedConditions[] = {0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xa, 0xb};
  const uint8_t cc = kDefinedConditions[(a ^ b) % sizeof(kDefinedConditions)];
  const uint8_t d8 = static_cast<uint8_t>(b & 0x3f);
  switch (kind % 30) {
    case 0:
    case 1: {  // ALU reg, reg
      static constexpr uint8_t kOpcodes[] = {0x01, 0x09, 0x21, 0x29, 0x31, 0x39, 0x85, 0x89};
      return {rex(w, r2, 0, r1), kOpcodes[(kind >> 3) % 8], modrm(3, r2, r1)};
    }
    case 2:  // INC / DEC
      return {rex(w, 0, 0, r1), 0xff, modrm(3, (kind >> 3) & 1, r1)};
    case 3: {  // SHL / SHR / SAR by 1..31
      static constexpr uint8_t kShifts[] = {4, 5, 7};
      return {rex(w, 0, 0, r1), 0xc1, modrm(3, kShifts[(kind >> 3) % 3], r1), static_cast<uint8_t>(1 + b % 31)};
    }
    case 4:  // LEA r1, [r2 + r3 * scale + disp8]
      return {rex(w, r1, r3, r2), 0x8d, modrm(1, r1, 4),
              static_cast<uint8_t>(((kind >> 3) & 3) << 6 | (r3 & 7) << 3 | (r2 & 7)), b};
    case 5: {  // MOV r1, simm32
      std::vector<uint8_t> i = {rex(true, 0, 0, r1), 0xc7, modrm(3, 0, r1)};
      for (int k = 0; k < 4; ++k) i.push_back(in.byte());
      return i;
    }
    case 6:  // store [R14 + disp8], r1
      return {rex(w, r1, 0, 14), 0x89, modrm(1, r1, 14), static_cast<uint8_t>(b & 0x3f)};
    case 7:  // load r1, [R14 + disp8]
      return {rex(w, r1, 0, 14), 0x8b, modrm(1, r1, 14), static_cast<uint8_t>(b & 0x3f)};
    case 8:  // ADD R14, imm8: walks toward the missing page
      return {0x49, 0x83, 0xc6, static_cast<uint8_t>(b & 0x1f)};
    case 10: {  // ALU between r1 and [R14 + disp8], either way round, or CMP/TEST with memory
      static constexpr uint8_t kOpcodes[] = {0x01, 0x03, 0x29, 0x2b, 0x31, 0x33, 0x39, 0x3b, 0x85, 0x21};
      return {rex(w, r1, 0, 14), kOpcodes[(kind >> 4) % 10], modrm(1, r1, 14), static_cast<uint8_t>(b & 0x3f)};
    }
    case 11: {  // MOVZX / MOVSX r1, byte or word [R14 + disp8]
      static constexpr uint8_t kOpcodes[] = {0xb6, 0xb7, 0xbe, 0xbf};
      return {rex(w, r1, 0, 14), 0x0f, kOpcodes[(kind >> 4) % 4], modrm(1, r1, 14), static_cast<uint8_t>(b & 0x3f)};
    }
    case 12: {  // byte store / RMW of [R14 + disp8] with an immediate (MOV, ADD, XOR), or INC/DEC/NOT/NEG of it
      const uint8_t d = static_cast<uint8_t>(b & 0x3f);
      switch ((kind >> 4) % 4) {
        case 0: return {0x41, 0xc6, modrm(1, 0, 14), d, a};
        case 1: return {rex(w, 0, 0, 14), 0x83, modrm(1, (a & 1) ? 6 : 0, 14), d, a};
        case 2: return {rex(w, 0, 0, 14), 0xff, modrm(1, a & 1, 14), d};
        default: return {rex(w, 0, 0, 14), 0xf7, modrm(1, (a & 1) ? 3 : 2, 14), d};
      }
    }
    case 13:  // load r1, [RSP + disp8]: the guest's stack, not the host's
      return {rex(w, r1, 0, 4), 0x8b, modrm(1, r1, 4), 0x24, static_cast<uint8_t>(b & 0x38)};
    case 14: {  // ROL / ROR r1 by 1..31, NOT / NEG r1
      if (b & 0x80) return {rex(w, 0, 0, r1), 0xf7, modrm(3, (b & 1) ? 3 : 2, r1)};
      return {rex(w, 0, 0, r1), 0xc1, modrm(3, (kind >> 4) & 1, r1), static_cast<uint8_t>(1 + b % 31)};
    }
    case 16:  // CMOVcc r1, r2 or r1, [R14 + disp8]
      if (a & 1) return {rex(w, r1, 0, 14), 0x0f, static_cast<uint8_t>(0x40 | cc), modrm(1, r1, 14), d8};
      return {rex(w, r1, 0, r2), 0x0f, static_cast<uint8_t>(0x40 | cc), modrm(3, r1, r2)};
    case 17:  // SETcc of a byte register (AH..BH without REX, SPL.. with) or of [R14 + disp8]
      if (b & 0x40) return {0x41, 0x0f, static_cast<uint8_t>(0x90 | cc), modrm(1, 0, 14), d8};
      if (w) return {rex(false, 0, 0, r1), 0x0f, static_cast<uint8_t>(0x90 | cc), modrm(3, 0, r1)};
      return {0x0f, static_cast<uint8_t>(0x90 | cc), modrm(3, 0, r1 & 7)};
    case 18: {  // ADC / SBB r2 into r1, or r1 with [R14 + disp8] either way round
      static constexpr uint8_t kOpcodes[] = {0x11, 0x19, 0x13, 0x1b};
      const uint8_t op = kOpcodes[(kind >> 3) % 4];
      if (a & 1) return {rex(w, r1, 0, 14), op, modrm(1, r1, 14), d8};
      return {rex(w, r2, 0, r1), static_cast<uint8_t>(op & 0xfd), modrm(3, r2, r1)};
    }
    case 19: {  // CBW / CWDE / CDQE / CWD / CDQ / CQO, XCHG r1, r2, NOPs with and without ModRM
      switch ((kind >> 3) % 10) {
        case 0: return {0x66, 0x98};
        case 1: return {0x98};
        case 2: return {0x48, 0x98};
        case 3: return {0x66, 0x99};
        case 4: return {0x99};
        case 5: return {0x48, 0x99};
        case 6: return {rex(w, r2, 0, r1), 0x87, modrm(3, r2, r1)};
        case 7: return {0x90};
        case 8: return {0x0f, 0x1f, 0x44, 0x00, 0x00};                           // nop [rax + rax]
        default: return {0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00};  // nop [rax + rax + 0]
      }
    }
    case 20:  // PUSH r1 / PUSH simm8 / POP r1 (the stack is the guest's)
      switch ((kind >> 3) % 3) {
        case 0: return {rex(false, 0, 0, r1), static_cast<uint8_t>(0x50 | (r1 & 7))};
        case 1: return {0x6a, b};
        default: return {rex(false, 0, 0, r1), static_cast<uint8_t>(0x58 | (r1 & 7))};
      }
    case 21:  // CALL to the next instruction, POP of the return address into r1
      return {0xe8, 0, 0, 0, 0, rex(false, 0, 0, r1), static_cast<uint8_t>(0x58 | (r1 & 7))};
    case 22: {  // CALL next; ADD qword [RSP], k; RET (or PUSH imm; ...; RET 8): returns over two HLTs
      std::vector<uint8_t> i;
      const bool imm16 = kind & 0x80;
      if (imm16) i.insert(i.end(), {0x6a, a});
      const uint8_t k = static_cast<uint8_t>(5 + (imm16 ? 3 : 1) + 2);
      i.insert(i.end(), {0xe8, 0, 0, 0, 0, 0x48, 0x83, 0x04, 0x24, k});
      if (imm16) {
        i.insert(i.end(), {0xc2, 8, 0});
      } else {
        i.push_back(0xc3);
      }
      i.insert(i.end(), {0xf4, 0xf4});
      return i;
    }
    case 23:  // RSP as a register: SUB/ADD RSP, imm8; MOV r1, RSP; LEA r1, [RSP + disp8]; CMP RSP, r1
      switch ((kind >> 3) % 5) {
        case 0: return {0x48, 0x83, 0xec, static_cast<uint8_t>(b & 0x38)};
        case 1: return {0x48, 0x83, 0xc4, static_cast<uint8_t>(b & 0x38)};
        case 2: return {rex(true, 4, 0, r1), 0x89, modrm(3, 4, r1)};
        case 3: return {rex(true, r1, 0, 4), 0x8d, modrm(1, r1, 4), 0x24, b};
        default: return {rex(true, r1, 0, 4), 0x39, modrm(3, r1, 4)};
      }
    case 24: {  // DIV / IDIV of r2 or [R14 + disp8], 32 or 64 bits, mostly after the zero or sign extension into RDX
      const bool idiv = a & 1;
      std::vector<uint8_t> i;
      if (!(a & 2)) {
        if (idiv) {
          i.insert(i.end(), {rex(w, 0, 0, 0), 0x99});  // cdq / cqo
        } else {
          i.insert(i.end(), {0x31, 0xd2});  // xor edx, edx
        }
      }
      const unsigned ext = idiv ? 7 : 6;
      if (b & 0x40) {
        i.insert(i.end(), {rex(w, 0, 0, 14), 0xf7, modrm(1, ext, 14), d8});
      } else {
        i.insert(i.end(), {rex(w, 0, 0, r2), 0xf7, modrm(3, ext, r2)});
      }
      return i;
    }
    case 25: {  // LOCK CMPXCHG / LOCK XADD / XCHG with [R14 + disp8] (any alignment), or the register forms
      const bool byte = a & 0x80;       // 8 bits: always aligned
      const uint8_t sz = byte ? 0 : 1;  // the opcode's low bit: 0 for bytes
      switch ((kind >> 3) % 5) {
        case 0: return {0xf0, rex(w && !byte, r1, 0, 14), 0x0f, static_cast<uint8_t>(0xb0 | sz), modrm(1, r1, 14), d8};
        case 1: return {0xf0, rex(w && !byte, r1, 0, 14), 0x0f, static_cast<uint8_t>(0xc0 | sz), modrm(1, r1, 14), d8};
        case 2: return {rex(w && !byte, r1, 0, 14), static_cast<uint8_t>(0x86 | sz), modrm(1, r1, 14), d8};
        case 3: return {rex(w, r2, 0, r1), 0x0f, 0xb1, modrm(3, r2, r1)};
        default: return {rex(w, r2, 0, r1), 0x0f, 0xc1, modrm(3, r2, r1)};
      }
    }
    case 26:  // PUSHFQ; AND qword [RSP], ~(AF | OF) (undefined after some instructions here); POP r1; or CLI / STI
      if (((kind >> 3) & 3) == 3) return {static_cast<uint8_t>(a & 1 ? 0xfb : 0xfa)};
      return {0x9c,
              0x48,
              0x81,
              0x24,
              0x24,
              0xef,
              0xf7,
              0xff,
              0xff,
              rex(false, 0, 0, r1),
              static_cast<uint8_t>(0x58 | (r1 & 7))};
    case 27:
    case 28: {  // LEA RDI/RSI near R14; MOV ECX, 0..31; [REP] MOVS/STOS of 1..8 bytes; or STD / CLD
      if ((kind >> 3) % 8 == 7) return {static_cast<uint8_t>(a & 1 ? 0xfd : 0xfc)};
      static constexpr uint8_t kOps[] = {0xa4, 0xa5, 0xaa, 0xab};  // movs / stos, byte or full size
      const uint8_t op = kOps[(kind >> 3) % 4];
      std::vector<uint8_t> i = {0x49, 0x8d,
                                0x7e, d8,  // lea rdi, [r14 + d8]
                                0x49, 0x8d,
                                0x76, static_cast<uint8_t>(a & 0x3f),  // lea rsi, [r14 + d8']
                                0xb9, static_cast<uint8_t>(b >> 3 & 0x1f),
                                0,    0,
                                0};                                // mov ecx, 0..31
      if (kind & 0x40) i.push_back(0x66);                          // 16-bit
      if (b & 1) i.insert(i.end() - (kind & 0x40 ? 1 : 0), 0xf3);  // REP before the operand size prefix
      if (w && !(kind & 0x40)) i.push_back(0x48);
      i.push_back(op);
      return i;
    }
    case 29: {  // MOV load/store or ADD through [R14 + R15*scale + disp8/disp32], [R15*scale + disp32] or a word [R14 + R15*scale]
      const unsigned scale = (a >> 6) & 3;
      const uint8_t op = (kind & 0x40) ? 0x89 : (b & 0x40) ? 0x8b : 0x03;
      switch ((kind >> 3) & 3) {
        case 0: return {rex(w, r1, 15, 14), op, modrm(1, r1, 4), sib(scale, 15, 14), d8};
        case 1: return {rex(w, r1, 15, 14), op, modrm(2, r1, 4), sib(scale, 15, 14), d8, 0, 0, 0};
        case 2: {  // no base: the address is the disp32, near the page boundary as R14 starts
          const uint32_t d = static_cast<uint32_t>(TestMachine::kData + 0x1000 - 64 + d8);
          return {rex(w, r1, 15, 0), op,
                  modrm(0, r1, 4),   sib(scale, 15, 5),
                  static_cast<uint8_t>(d), static_cast<uint8_t>(d >> 8),
                  static_cast<uint8_t>(d >> 16), static_cast<uint8_t>(d >> 24)};
        }
        default: return {0x66, rex(false, r1, 15, 14), op, modrm(0, r1, 4), sib(scale, 15, 14)};
      }
    }
    default: {  // Jcc rel8 on ZF, CF or SF (defined after every instruction used) over the next instruction
      static constexpr uint8_t kConditions[] = {0x74, 0x75, 0x72, 0x73, 0x78, 0x79};
      *is_branch = true;
      return {kConditions[(kind >> 3) % 6], 0};
    }
  }
}

std::vector<uint8_t> program(Input& in) {
  const uint8_t count = static_cast<uint8_t>(emu::jit::Translator::kHotUses + 4 + in.byte() % 32);
  std::vector<uint8_t> code = {0x41, 0xbf, count, 0, 0, 0};  // mov r15d, count
  const size_t top = code.size();
  size_t pending_branch = 0;  // offset of a rel8 waiting for the next instruction's length
  for (int n = 0; n < 48 && !in.empty(); ++n) {
    bool is_branch;
    const std::vector<uint8_t> insn = instruction(in, &is_branch);
    if (pending_branch) code[pending_branch] = static_cast<uint8_t>(insn.size());
    pending_branch = 0;
    code.insert(code.end(), insn.begin(), insn.end());
    if (is_branch) pending_branch = code.size() - 1;
  }
  code.insert(code.end(), {0x41, 0xff, 0xcf, 0x0f, 0x85});  // dec r15d; jnz rel32 top
  const int32_t rel = static_cast<int32_t>(top) - static_cast<int32_t>(code.size() + 4);
  for (int k = 0; k < 4; ++k) code.push_back(static_cast<uint8_t>(static_cast<uint32_t>(rel) >> (8 * k)));
  code.push_back(0xf4);  // hlt
  return code;
}

[[noreturn]] void differ(const char* what, uint64_t reference, uint64_t translated) {
  std::fprintf(stderr, "emu_jit_diff: %s differs: interpreter %#llx, translator %#llx\n", what,
               static_cast<unsigned long long>(reference), static_cast<unsigned long long>(translated));
  std::abort();
}

void same(const char* what, uint64_t reference, uint64_t translated) {
  if (reference != translated) differ(what, reference, translated);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  Input in(data, size);
  uint64_t regs[16];
  for (uint64_t& r : regs) r = in.byte() & 1 ? in.u64() : in.byte();
  const uint64_t arith_flags = in.byte();
  const uint64_t base = TestMachine::kData + 0x1000 - 64 + in.byte() % 64;  // loads/stores cross into the next page
  const std::vector<uint8_t> code = program(in);

  std::unique_ptr<TestMachine> machines[2] = {std::make_unique<TestMachine>(), std::make_unique<TestMachine>()};
  machines[0]->interpreter().set_translator(nullptr);
  auto translator = emu::jit::Translator::create(emu::jit::CodeCache::kMinBytes);
  if (!translator) {
    std::fprintf(stderr, "emu_jit_diff: %s\n", translator.error().message().c_str());
    std::abort();
  }
  machines[1]->interpreter().set_translator(std::move(*translator));
  Interpreter::Outcome outcomes[2];
  for (int i = 0; i < 2; ++i) {
    TestMachine& m = *machines[i];
    Cpu& cpu = m.cpu();
    for (int r = 0; r < 16; ++r)
      if (r != 4) cpu.gpr[r] = regs[r];
    cpu.gpr[14] = base;
    emu::set_arith_flags(cpu, arith_flags);
    m.set_pte(kMissingPage, 0);
    m.load_code(code);
    outcomes[i] = m.run(20000);
  }
  const Cpu& x = machines[0]->cpu();
  const Cpu& y = machines[1]->cpu();
  same("stop reason", static_cast<uint64_t>(outcomes[0].stop), static_cast<uint64_t>(outcomes[1].stop));
  static const char* const kNames[16] = {"RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
                                         "R8",  "R9",  "R10", "R11", "R12", "R13", "R14", "R15"};
  for (int r = 0; r < 16; ++r) same(kNames[r], x.gpr[r], y.gpr[r]);
  same("RIP", x.rip, y.rip);
  // AF and OF are left undefined by some of the instructions used; the rest are defined by all.
  constexpr uint64_t kDefined = emu::kFlagCf | emu::kFlagPf | emu::kFlagZf | emu::kFlagSf;
  const uint64_t flags_mask = ~emu::kArithFlags | kDefined;
  same("RFLAGS", emu::read_flags(x) & flags_mask, emu::read_flags(y) & flags_mask);
  same("CR2", x.cr2, y.cr2);
  same("exception", static_cast<uint64_t>(machines[0]->vector_taken()),
       static_cast<uint64_t>(machines[1]->vector_taken()));
  same("instructions", machines[0]->interpreter().instructions(), machines[1]->interpreter().instructions());
  for (uint64_t a = TestMachine::kData; a < kMissingPage; a += 8) {
    same("data memory", machines[0]->read<uint64_t>(a), machines[1]->read<uint64_t>(a));
  }
  // The exception frame (RIP, CS, RFLAGS with its undefined bits masked, RSP, SS).
  for (uint64_t a = x.gpr[4]; a < TestMachine::kStackTop; a += 8) {
    const bool flags_slot = machines[0]->vector_taken() >= 0 && a == x.gpr[4] + 24;
    const uint64_t mask = flags_slot ? flags_mask : ~0ull;
    same("stack", machines[0]->read<uint64_t>(a) & mask, machines[1]->read<uint64_t>(a) & mask);
  }
  return 0;
}
