// Measures the software CPU's speed in guest MIPS on tight loops that stay in
// the decoded-block cache: integer ALU, loads/stores through the soft TLB,
// and CALL/RET.
#include <time.h>

#include <cstdio>

#include "hv/emu/jit/tier_options.h"
#include "hv/emu/testing/snippet.h"
#include "hv/emu/testing/test_machine.h"

using hostvisor::emu::Interpreter;
using hostvisor::emu::testing::TestMachine;

HV_EMU_SNIPPET(alu_loop, R"(
  mov ecx, 20000000
1: add rax, rcx
  xor rbx, rax
  shl rdx, 3
  inc rsi
  dec ecx
  jnz 1b
  hlt
)")

HV_EMU_SNIPPET(memory_loop, R"(
  mov ecx, 20000000
  mov rdi, 0x100000
1: mov rax, [rdi]
  add rax, rcx
  mov [rdi + 8], rax
  dec ecx
  jnz 1b
  hlt
)")

HV_EMU_SNIPPET(call_loop, R"(
  mov ecx, 10000000
1: call 2f
  dec ecx
  jnz 1b
  hlt
2: add rax, 1
  ret
)")

static void measure(const char* name, std::span<const uint8_t> code) {
  TestMachine m;
  // The tier hostvisor would use (--emu-tier's default, or HOSTVISOR_EMU_TIER):
  // the machine itself always interprets.
  if (auto options = hostvisor::emu::jit::tier_options(); options && options->tier == hostvisor::emu::jit::Tier::kJit) {
    if (auto translator = hostvisor::emu::jit::Translator::create(options->code_cache_bytes); translator)
      m.interpreter().set_translator(std::move(*translator));
  }
  m.load_code(code);
  // CPU time of this thread, so a busy host (shared cores) does not distort the figure.
  auto cpu_seconds = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  const double start = cpu_seconds();
  Interpreter::Outcome out = m.run(UINT64_MAX);
  const double seconds = cpu_seconds() - start;
  const double mips = static_cast<double>(m.interpreter().instructions()) / seconds / 1e6;
  std::printf("emu %-12s %8.1f guest MIPS (%llu instructions in %.3f s of CPU time)%s\n", name, mips,
              static_cast<unsigned long long>(m.interpreter().instructions()), seconds,
              out.stop == Interpreter::Stop::kHalt ? "" : "  [did not finish]");
}

int main() {
  measure("alu", alu_loop());
  measure("memory", memory_loop());
  measure("call/ret", call_loop());
  return 0;
}
