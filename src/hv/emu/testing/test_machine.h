// A small bare machine around one software CPU, for the emulator's own tests
// and fuzz target: guest RAM, identity page tables, a GDT with kernel/user
// segments and a TSS, and an IDT whose every vector lands on its own HLT, so
// a test sees which exception was raised, with what error code and CR2.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "hv/emu/code_map.h"
#include "hv/emu/cpu.h"
#include "hv/emu/interpreter.h"
#include "memory/guest_memory.h"

namespace hostvisor::emu::testing {

class TestMachine {
 public:
  // Guest-physical layout (identity-mapped in long mode).
  static constexpr uint64_t kRamSize = 4ull << 20;
  static constexpr uint64_t kPml4 = 0x1000;
  static constexpr uint64_t kPdpt = 0x2000;
  static constexpr uint64_t kPd = 0x3000;
  static constexpr uint64_t kPt = 0x4000;  // 4 KiB pages for the first 2 MiB
  static constexpr uint64_t kGdt = 0x5000;
  static constexpr uint64_t kIdt = 0x6000;
  static constexpr uint64_t kVectorStubs = 0x7000;  // vector v: HLT at kVectorStubs + 8 * v
  static constexpr uint64_t kTss = 0x9000;
  static constexpr uint64_t kCode = 0x10000;
  static constexpr uint64_t kStackTop = 0x80000;
  static constexpr uint64_t kIstStackTop = 0x70000;
  static constexpr uint64_t kData = 0x100000;
  // Selectors.
  static constexpr uint16_t kCode64 = 0x08, kData64 = 0x10, kCode32 = 0x18, kUserCode64 = 0x23, kUserData = 0x2b,
                            kTssSel = 0x30, kCode16 = 0x40, kData16 = 0x48;

  // A 64-bit machine at CPL 0 with paging, interrupts off, RIP at kCode,
  // on the interpreter alone (the reference) whatever the default tier.
  TestMachine();

  Cpu& cpu() { return cpu_; }
  GuestMemory& memory() { return memory_; }
  Interpreter& interpreter() { return *interpreter_; }
  CodeMap& code_map() { return code_; }

  // Copies `bytes` to kCode (or `address`) and points RIP there.
  void load_code(std::span<const uint8_t> bytes, uint64_t address = kCode);
  void write(uint64_t address, std::span<const uint8_t> bytes);
  template <typename T>
  T read(uint64_t address) {
    return memory_.read_obj<T>(GuestAddress(address)).value();
  }
  template <typename T>
  void write_value(uint64_t address, T value) {
    (void)memory_.write_obj<T>(GuestAddress(address), value);
  }

  Interpreter::Outcome run(uint64_t limit = 1'000'000) { return interpreter_->run(limit); }

  // After a run that stopped at a vector's HLT stub: the vector, else -1.
  int vector_taken() const;
  // The 4 KiB page-table entry that maps linear `address` (< 2 MiB).
  uint64_t pte(uint64_t address);
  void set_pte(uint64_t address, uint64_t value);

  // Puts the CPU in real mode at CS:IP = 0:`ip` with the IVT at 0.
  void enter_real_mode(uint16_t ip);

 private:
  GuestMemory memory_;
  CodeMap code_;
  Cpu cpu_;
  std::unique_ptr<Interpreter> interpreter_;
};

}  // namespace hostvisor::emu::testing
