// Fuzz target: random bytes as guest code on the software CPU. The first
// byte picks the mode (64-bit, 32-bit compatibility, real mode) and seeds a
// few registers; the rest is loaded at the code address and run for a
// bounded number of instructions, answering every MMIO/port read with data
// from the input. Faults must become guest exceptions, never host crashes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "hv/emu/flags.h"
#include "hv/emu/mmu.h"
#include "hv/emu/segments.h"
#include "hv/emu/testing/test_machine.h"

using hostvisor::emu::Interpreter;
using hostvisor::emu::testing::TestMachine;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // A fresh machine per input keeps runs independent (the code cache and page tables start clean).
  TestMachine m;
  hostvisor::emu::Cpu& cpu = m.cpu();
  const uint8_t control = data[0];
  std::span<const uint8_t> code(data + 1, size - 1);
  if (code.size() > 0x4000) code = code.first(0x4000);

  // Registers point at interesting places: data, page tables, the stack, unmapped space.
  static const uint64_t kPointers[] = {TestMachine::kData, TestMachine::kPml4, TestMachine::kStackTop - 64,
                                       0xc0000000,         0x0000800000000000, 0x3ff000};
  for (int i = 0; i < 16; ++i) {
    if (i != 4) cpu.gpr[i] = kPointers[(control + i) % 6] + i * 8;
  }
  // Make one page not present and one read-only to reach the #PF paths; map 1 GiB of MMIO.
  m.set_pte(TestMachine::kData + 0x3000, 0);
  m.set_pte(TestMachine::kData + 0x4000, (TestMachine::kData + 0x4000) | 1);
  m.write_value<uint64_t>(TestMachine::kPdpt + 3 * 8, 0xc0000000ull | 0x83);

  switch (control & 3) {
    case 1: {  // 32-bit compatibility mode
      uint64_t d = m.read<uint64_t>(TestMachine::kGdt + TestMachine::kCode32);
      cpu.seg[hostvisor::emu::kCs] = hostvisor::emu::segment_from_descriptor(d, TestMachine::kCode32);
      hostvisor::emu::update_mode(cpu);
      break;
    }
    case 2:  // real mode
      m.enter_real_mode(0);
      cpu.seg[hostvisor::emu::kCs].selector = 0x1000;
      cpu.seg[hostvisor::emu::kCs].base = TestMachine::kCode;
      break;
    default: break;
  }
  m.write(TestMachine::kCode, code);
  if ((control & 3) != 2) cpu.rip = TestMachine::kCode;
  hostvisor::emu::write_flags(cpu, (control & 0x40) ? 0x202 : 0x2);

  size_t feed = 0;
  for (int exits = 0; exits < 16; ++exits) {
    Interpreter::Outcome out = m.run(4000);
    if (out.stop != Interpreter::Stop::kIo) break;
    hostvisor::emu::IoRecord& r = cpu.io.records[cpu.io.count - 1];
    if (!r.is_write) {
      for (unsigned i = 0; i < r.size; ++i) r.data[i] = data[(feed++) % size];
    }
  }
  return 0;
}
