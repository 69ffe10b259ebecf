// The instruction boundaries at which the interpreter (the reference tier)
// recognises interrupts, as the SDM names them: right after an IRET or POPF
// that sets IF, after the one instruction that STI's and MOV SS's shadow
// covers (never inside it, even across an I/O exit), and between the
// iterations of a REP string instruction. A real LocalApic (x2APIC mode, so
// the handlers EOI with WRMSR) feeds the CPU; each handler logs the RIP the
// interrupt saved, which is the boundary it was taken at.
#include <gtest/gtest.h>

#include <vector>

#include "hv/emu/platform/apic_bus.h"
#include "hv/emu/platform/local_apic.h"
#include "hv/emu/platform/platform_clock.h"
#include "hv/emu/platform/platform_timers.h"
#include "hv/emu/testing/snippet.h"
#include "hv/emu/testing/test_machine.h"

namespace hostvisor::emu {
namespace {

using testing::TestMachine;
using Stop = Interpreter::Stop;

// Logs the interrupted RIP at [R10] (R10 += 8), EOIs through the x2APIC MSR, returns.
HV_EMU_SNIPPET(logging_handler, R"(
  mov r9, [rsp]
  mov [r10], r9
  add r10, 8
  mov ecx, 0x80b
  xor eax, eax
  xor edx, edx
  wrmsr
  iretq
)")

HV_EMU_SNIPPET(sti_nop_window, R"(
  sti
  nop
  inc r11
  cli
  hlt
)")

HV_EMU_SNIPPET(sti_then_two, R"(
  sti
  inc r11
  inc r12
  cli
  hlt
)")

HV_EMU_SNIPPET(mov_ss_then_two, R"(
  mov ss, bx
  inc r11
  inc r12
  cli
  hlt
)")

HV_EMU_SNIPPET(popf_sets_if, R"(
  push 0x202
  popfq
  inc r11
  cli
  hlt
)")

HV_EMU_SNIPPET(iret_sets_if, R"(
  mov rax, rsp
  push 0x10
  push rax
  push 0x202
  push 0x08
  lea rax, [rip + hv_iret_sets_if_target]
  push rax
  iretq
hv_iret_sets_if_target:
  inc r11
  cli
  hlt
)")

HV_EMU_SNIPPET(sti_then_port_write, R"(
  sti
  out 0x80, al
  inc r11
  cli
  hlt
)")

HV_EMU_SNIPPET(rep_outsb, R"(
  rep outsb
  hlt
)")

class InterruptBoundary : public ::testing::Test {
 protected:
  static constexpr uint64_t kHandler = 0x20000;
  static constexpr uint64_t kLog = TestMachine::kData;
  static constexpr uint8_t kHigh = 0x50, kLow = 0x40;

  void SetUp() override {
    bus_.add(lapic_);
    const uint64_t base = LocalApic::kDefaultBase | LocalApic::kApicBaseBsp | LocalApic::kApicBaseEnable;
    ASSERT_TRUE(lapic_.msr_write(LocalApic::kMsrApicBase, base | LocalApic::kApicBaseX2apic).ok());
    ASSERT_TRUE(lapic_.msr_write(LocalApic::kMsrX2apicFirst + LocalApic::kRegSvr / 16, 0x1ff).ok());
    m_.cpu().lapic = &lapic_;
    m_.write(kHandler, logging_handler());
    set_gate(kHigh, kHandler);
    set_gate(kLow, kHandler);
    m_.cpu().gpr[10] = kLog;
  }

  // A 64-bit interrupt gate for `vector` to `target` (below 4 GiB).
  void set_gate(uint8_t vector, uint64_t target) {
    const uint64_t lo = (target & 0xffff) | (static_cast<uint64_t>(TestMachine::kCode64) << 16) | (0xeull << 40) |
                        (1ull << 47) | ((target >> 16) << 48);
    m_.write_value<uint64_t>(TestMachine::kIdt + vector * 16, lo);
    m_.write_value<uint64_t>(TestMachine::kIdt + vector * 16 + 8, 0);
  }

  void interrupt(uint8_t vector) {
    ApicMessage message;
    message.vector = vector;
    lapic_.accept(message);
  }

  // The RIPs the handler saw, in delivery order.
  std::vector<uint64_t> logged() {
    std::vector<uint64_t> rips;
    for (uint64_t a = kLog; a < m_.cpu().gpr[10]; a += 8) rips.push_back(m_.read<uint64_t>(a));
    return rips;
  }

  ManualClock clock_{0};
  PlatformTimers timers_{clock_};
  ApicBus bus_;
  LocalApic lapic_{0, true, bus_, timers_};
  TestMachine m_;
};

// The issue's example: two interrupts wait while IF = 0; `sti; nop` opens the
// window. The first is taken after the NOP (STI's shadow), and its handler's
// IRET lets the second in before the instruction after the NOP runs.
TEST_F(InterruptBoundary, StiShadowThenIretLetsTheSecondInBeforeTheNextInstruction) {
  interrupt(kHigh);
  interrupt(kLow);
  m_.load_code(sti_nop_window());
  const auto outcome = m_.run();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  const uint64_t after_nop = TestMachine::kCode + 2;
  EXPECT_EQ(logged(), (std::vector<uint64_t>{after_nop, after_nop}));
  EXPECT_EQ(m_.cpu().gpr[11], 1u);
  EXPECT_FALSE(lapic_.has_interrupt());
}

// An interrupt that arrives while STI's shadow is open waits for exactly one instruction.
TEST_F(InterruptBoundary, StiShadowCoversExactlyOneInstruction) {
  m_.load_code(sti_then_two());
  ASSERT_EQ(m_.run(1).stop, Stop::kInstructionLimit);  // STI ran, its shadow is open
  interrupt(kLow);
  const auto outcome = m_.run();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  EXPECT_EQ(logged(), (std::vector<uint64_t>{TestMachine::kCode + 1 + 3}));  // after STI and one INC
  EXPECT_EQ(m_.cpu().gpr[11], 1u);
  EXPECT_EQ(m_.cpu().gpr[12], 1u);
}

TEST_F(InterruptBoundary, MovSsShadowCoversExactlyOneInstruction) {
  m_.cpu().rflags |= kFlagIf;
  m_.cpu().gpr[3] = TestMachine::kData64;
  const auto code = mov_ss_then_two();
  m_.load_code(code);
  ASSERT_EQ(m_.run(1).stop, Stop::kInstructionLimit);  // MOV SS ran, its shadow is open
  interrupt(kLow);
  const auto outcome = m_.run();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  const uint64_t after_first_inc = TestMachine::kCode + code.size() - 3 - 1 - 1;  // INC R12, CLI, HLT follow
  EXPECT_EQ(logged(), (std::vector<uint64_t>{after_first_inc}));
  EXPECT_EQ(m_.cpu().gpr[12], 1u);
}

// The shadowed instruction exits to the VMM for its port write and restarts:
// the shadow still holds for it, the interrupt comes after it completes.
TEST_F(InterruptBoundary, ShadowSurvivesAnIoExitOfTheShadowedInstruction) {
  interrupt(kLow);
  m_.load_code(sti_then_port_write());
  ASSERT_EQ(m_.run().stop, Stop::kIo);
  EXPECT_TRUE(logged().empty());
  const auto outcome = m_.run();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  EXPECT_EQ(logged(), (std::vector<uint64_t>{TestMachine::kCode + 1 + 2}));  // after STI and OUT
  EXPECT_EQ(m_.cpu().gpr[11], 1u);
}

TEST_F(InterruptBoundary, PopfThatSetsIfTakesTheInterruptRightAfterIt) {
  interrupt(kLow);
  m_.load_code(popf_sets_if());
  const auto outcome = m_.run();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  EXPECT_EQ(logged(), (std::vector<uint64_t>{TestMachine::kCode + 5 + 1}));  // after PUSH imm32 and POPFQ
  EXPECT_EQ(m_.cpu().gpr[11], 1u);
}

TEST_F(InterruptBoundary, IretThatSetsIfTakesTheInterruptBeforeTheTargetRuns) {
  interrupt(kLow);
  const auto code = iret_sets_if();
  m_.load_code(code);
  const auto outcome = m_.run();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  const uint64_t target = TestMachine::kCode + code.size() - 5;  // INC R11 (3), CLI, HLT
  EXPECT_EQ(logged(), (std::vector<uint64_t>{target}));
  EXPECT_EQ(m_.cpu().gpr[11], 1u);
}

// Each OUTSB iteration exits to the VMM; an interrupt that arrives during the
// third is taken right after that iteration, with RCX/RSI describing the
// seven left and the saved RIP on the REP instruction, which resumes later.
TEST_F(InterruptBoundary, RepStringTakesAnInterruptBetweenIterations) {
  constexpr uint8_t kStubVector = 0x60;  // the machine's own gate: a HLT stub
  Cpu& cpu = m_.cpu();
  cpu.rflags |= kFlagIf;
  cpu.gpr[1] = 10;
  cpu.gpr[2] = 0x80;
  cpu.gpr[6] = TestMachine::kData;
  m_.load_code(rep_outsb());
  for (int exit = 1; exit <= 3; ++exit) {
    ASSERT_EQ(m_.run().stop, Stop::kIo) << "exit " << exit;
    ASSERT_EQ(cpu.gpr[1], 10u - (exit - 1));
  }
  interrupt(kStubVector);  // arrives while the third iteration waits for the VMM
  const auto outcome = m_.run();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  EXPECT_EQ(m_.vector_taken(), kStubVector);
  EXPECT_EQ(m_.read<uint64_t>(cpu.gpr[4]), TestMachine::kCode);  // the saved RIP: the REP OUTSB
  EXPECT_EQ(cpu.gpr[1], 7u);
  EXPECT_EQ(cpu.gpr[6], TestMachine::kData + 3);
}

}  // namespace
}  // namespace hostvisor::emu
