// The emu backend through the neutral Hypervisor/Vm/Vcpu interfaces, with the
// platform's interrupt controllers: port I/O exits and their completion, PIC
// and PIT ports served inside the backend, a LAPIC timer interrupt waking a
// HLT, kick(), an application processor started with INIT/SIPI, and the
// neutral vCPU and irqchip state saved, encoded and restored into another VM.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/state_codec.h"
#include "hv/emu/emu_hypervisor.h"
#include "hv/emu/testing/snippet.h"
#include "memory/guest_memory.h"

namespace hostvisor::emu {
namespace {

constexpr uint64_t kCodeAddress = 0x10000;
constexpr uint64_t kIdtAddress = 0x1000;
constexpr uint64_t kGdtAddress = 0x3000;

struct Machine {
  std::unique_ptr<Hypervisor> hv;
  std::unique_ptr<Vm> vm;
  GuestMemory memory;
  std::vector<std::unique_ptr<Vcpu>> vcpus;
};

Machine make_machine(unsigned vcpus) {
  Machine m;
  auto hv = create_emu_hypervisor();
  EXPECT_TRUE(hv.ok());
  m.hv = std::move(*hv);
  EXPECT_STREQ(m.hv->name(), "emu");
  auto vm = m.hv->create_vm({.vcpu_count = vcpus});
  EXPECT_TRUE(vm.ok()) << vm.error().message();
  m.vm = std::move(*vm);
  auto mem = GuestMemory::create({{GuestAddress(0), 2ull << 20}});
  EXPECT_TRUE(mem.ok());
  m.memory = std::move(*mem);
  EXPECT_TRUE(m.vm->map_memory(m.memory).ok());
  // GDT: null, flat 32-bit code (0x08), flat data (0x10); interrupt gates name 0x08.
  const uint64_t gdt[] = {0, 0x00cf9b000000ffffull, 0x00cf93000000ffffull};
  EXPECT_TRUE(
      m.memory.write(GuestAddress(kGdtAddress), std::span(reinterpret_cast<const uint8_t*>(gdt), sizeof(gdt))).ok());
  for (unsigned i = 0; i < vcpus; ++i) {
    auto v = m.vm->create_vcpu(i);
    EXPECT_TRUE(v.ok());
    m.vcpus.push_back(std::move(*v));
  }
  return m;
}

// Flat 32-bit protected mode without paging, RIP at `rip`.
void enter_flat32(Vcpu& vcpu, uint64_t rip) {
  SystemRegisters s = vcpu.get_system_registers().value();
  Segment flat;
  flat.base = 0;
  flat.limit = 0xffffffff;
  flat.g = true;
  flat.db = true;
  flat.type = 0x3;
  flat.selector = 0x10;
  s.ds = s.es = s.fs = s.gs = s.ss = flat;
  s.cs = flat;
  s.cs.type = 0xb;
  s.cs.selector = 0x08;
  s.cr0 = x86::kCr0Pe | x86::kCr0Et;
  s.idt = {kIdtAddress, 0x7ff};
  s.gdt = {kGdtAddress, 0x17};
  ASSERT_TRUE(vcpu.set_system_registers(s).ok());
  Registers r;
  r.rip = rip;
  r.rsp = 0x8000;
  ASSERT_TRUE(vcpu.set_registers(r).ok());
}

// A 32-bit interrupt gate for `vector` to `target` with code selector 0x08.
void set_gate32(GuestMemory& mem, unsigned vector, uint32_t target) {
  uint64_t gate =
      (target & 0xffff) | (0x08ull << 16) | (0xeull << 40) | (1ull << 47) | (static_cast<uint64_t>(target >> 16) << 48);
  ASSERT_TRUE(mem.write_obj<uint64_t>(GuestAddress(kIdtAddress + vector * 8), gate).ok());
}

void load(GuestMemory& mem, uint64_t address, std::span<const uint8_t> code) {
  ASSERT_TRUE(mem.write(GuestAddress(address), code).ok());
}

HV_EMU_SNIPPET(port_exchange, R"(
.code32
  mov al, 0x5a
  out 0x80, al
  in al, 0x71
  mov bl, al
  mov al, 0xff
  out 0x21, al
  out 0xa1, al
  mov al, 0x34
  out 0x43, al
  hlt
)")

TEST(EmuVcpu, PortExitsCompleteAndPlatformPortsStayInside) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  load(m.memory, kCodeAddress, port_exchange());
  enter_flat32(cpu, kCodeAddress);
  auto exit = cpu.run();
  ASSERT_TRUE(exit.ok());
  auto* out = std::get_if<PortIoExit>(&*exit);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->port, 0x80);
  EXPECT_TRUE(out->is_write);
  EXPECT_EQ(out->data[0], 0x5a);
  exit = cpu.run();
  auto* in = std::get_if<PortIoExit>(&*exit);
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->port, 0x71);
  EXPECT_FALSE(in->is_write);
  in->data[0] = 0x42;
  // The PIC mask and PIT command ports are the backend's own: the next exit is the HLT.
  exit = cpu.run();
  ASSERT_TRUE(std::holds_alternative<HaltExit>(*exit));
  Registers r = cpu.get_registers().value();
  EXPECT_EQ(r.rbx & 0xff, 0x42u);
  EXPECT_EQ(r.rip, kCodeAddress + port_exchange().size());
}

HV_EMU_SNIPPET(in_then_spin, R"(
.code32
  in al, 0x71
  mov bl, al
1: jmp 1b
)")

// A kick after an I/O exit, as a pause sends it: the next run() completes
// the IN with the data the VMM wrote and stops before the next instruction
// (as KVM_RUN with immediate_exit does), so the state read then is past
// the IN and nothing after it ran.
TEST(EmuVcpu, KickAfterAnIoExitCompletesTheAccessAndRunsNothingMore) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  load(m.memory, kCodeAddress, in_then_spin());
  enter_flat32(cpu, kCodeAddress);
  auto exit = cpu.run();
  ASSERT_TRUE(exit.ok());
  auto* in = std::get_if<PortIoExit>(&*exit);
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->port, 0x71);
  in->data[0] = 0x42;
  cpu.kick();
  exit = cpu.run();
  ASSERT_TRUE(exit.ok());
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(*exit));
  Registers r = cpu.get_registers().value();
  EXPECT_EQ(r.rax & 0xff, 0x42u) << "the IN did not complete";
  EXPECT_EQ(r.rip, kCodeAddress + 2) << "the vCPU is not right after the IN";
  EXPECT_EQ(r.rbx & 0xff, 0u) << "an instruction after the IN ran";
}

// A device overwrites code the vCPU already ran (a disk read into a reused
// page): once the write is reported through Vm::dma_written, the next run
// executes the new bytes, not the stale decoded block.
TEST(EmuVcpu, DeviceWriteReportedAsDmaReplacesDecodedCode) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  const uint8_t first[] = {0xb8, 1, 0, 0, 0, 0xf4};   // mov eax, 1; hlt
  const uint8_t second[] = {0xb8, 2, 0, 0, 0, 0xf4};  // mov eax, 2; hlt
  ASSERT_TRUE(m.memory.write(GuestAddress(kCodeAddress), first).ok());
  enter_flat32(cpu, kCodeAddress);
  ASSERT_TRUE(std::holds_alternative<HaltExit>(*cpu.run()));
  EXPECT_EQ(cpu.get_registers().value().rax, 1u);

  ASSERT_TRUE(m.memory.write(GuestAddress(kCodeAddress), second).ok());  // as device DMA does: not through the vCPU
  m.vm->dma_written(kCodeAddress, sizeof(second));
  Registers r = cpu.get_registers().value();
  r.rip = kCodeAddress;
  ASSERT_TRUE(cpu.set_registers(r).ok());
  ASSERT_TRUE(std::holds_alternative<HaltExit>(*cpu.run()));
  EXPECT_EQ(cpu.get_registers().value().rax, 2u);
}

HV_EMU_SNIPPET(apic_timer, R"(
.code32
  mov dword ptr [0xfee000f0], 0x1ff
  mov dword ptr [0xfee003e0], 0xb
  mov dword ptr [0xfee00320], 0x40
  mov dword ptr [0xfee00380], 50000
  sti
1: hlt
  jmp 1b
)")
HV_EMU_SNIPPET(timer_handler, R"(
.code32
  mov dword ptr [0xfee000b0], 0
  mov al, 0x40
  out 0x80, al
  cli
  hlt
)")

TEST(EmuVcpu, LapicTimerInterruptWakesHlt) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  load(m.memory, kCodeAddress, apic_timer());
  load(m.memory, kCodeAddress + 0x100, timer_handler());
  set_gate32(m.memory, 0x40, kCodeAddress + 0x100);
  enter_flat32(cpu, kCodeAddress);
  // A watchdog so a broken wake-up fails the test instead of hanging it.
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 100 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!done) cpu.kick();
  });
  auto exit = cpu.run();
  done = true;
  watchdog.join();
  ASSERT_TRUE(exit.ok());
  auto* io = std::get_if<PortIoExit>(&*exit);
  ASSERT_NE(io, nullptr) << "the LAPIC timer interrupt did not arrive (exit index " << exit->index() << ")";
  EXPECT_EQ(io->port, 0x80);
  EXPECT_EQ(io->data[0], 0x40);
  exit = cpu.run();
  EXPECT_TRUE(std::holds_alternative<HaltExit>(*exit));
}

HV_EMU_SNIPPET(halt_forever, R"(
.code32
  sti
1: hlt
  jmp 1b
)")

TEST(EmuVcpu, KickInterruptsAHaltedVcpu) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  load(m.memory, kCodeAddress, halt_forever());
  enter_flat32(cpu, kCodeAddress);
  std::thread kicker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cpu.kick();
  });
  auto exit = cpu.run();
  kicker.join();
  ASSERT_TRUE(exit.ok());
  EXPECT_TRUE(std::holds_alternative<InterruptedExit>(*exit));
}

HV_EMU_SNIPPET(start_ap, R"(
.code32
  mov dword ptr [0xfee00310], 0x01000000
  mov dword ptr [0xfee00300], 0x00004500
  mov dword ptr [0xfee00310], 0x01000000
  mov dword ptr [0xfee00300], 0x00004620
  cli
  hlt
)")
HV_EMU_SNIPPET(ap_trampoline, R"(
.code16
  mov ax, cs
  mov al, 0x81
  out 0x81, al
  cli
  hlt
)")

// Runs vCPU 0 of a two-vCPU machine on a thread of its own while the test
// drives vCPU 1 (a CPU halted with interrupts off sleeps as long as another
// could wake it), and kicks both after 5 s so a failure cannot hang the test.
class BspThread {
 public:
  explicit BspThread(Machine& m)
      : thread_([this, &m] { exit_ = m.vcpus[0]->run(); }), watchdog_([this, &m] {
          for (int i = 0; i < 100 && !done_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
          if (!done_) {
            m.vcpus[0]->kick();
            m.vcpus[1]->kick();
          }
        }) {}
  ~BspThread() {
    if (thread_.joinable()) (void)join();
  }
  Result<VcpuExit> join() {
    thread_.join();
    done_ = true;
    watchdog_.join();
    return std::move(exit_);
  }

 private:
  Result<VcpuExit> exit_ = Error(ErrorCode::kInternal, "not run");
  std::atomic<bool> done_{false};
  std::thread thread_;
  std::thread watchdog_;
};

TEST(EmuVcpu, InitSipiStartsApplicationProcessorInRealMode) {
  Machine m = make_machine(2);
  load(m.memory, kCodeAddress, start_ap());
  load(m.memory, 0x20000, ap_trampoline());  // SIPI vector 0x20 -> 0x20000
  enter_flat32(*m.vcpus[0], kCodeAddress);
  // The BSP ends in cli; hlt: it sleeps as long as the AP could still wake it.
  BspThread bsp(m);
  auto ap_exit = m.vcpus[1]->run();
  ASSERT_TRUE(ap_exit.ok()) << ap_exit.error().message();
  auto* io = std::get_if<PortIoExit>(&*ap_exit);
  ASSERT_NE(io, nullptr) << "the AP did not start (exit index " << ap_exit->index() << ")";
  EXPECT_EQ(io->port, 0x81);
  Registers r = m.vcpus[1]->get_registers().value();
  EXPECT_EQ(r.rax & 0xff00, 0x2000u);  // CS = vector << 8
  SystemRegisters s = m.vcpus[1]->get_system_registers().value();
  EXPECT_EQ(s.cs.base, 0x20000u);

  // Now the AP halts with interrupts off too: no CPU is left to wake the
  // other, so both runs report the halt.
  ap_exit = m.vcpus[1]->run();
  const Result<VcpuExit> bsp_exit = bsp.join();
  ASSERT_TRUE(ap_exit.ok() && bsp_exit.ok());
  EXPECT_TRUE(std::holds_alternative<HaltExit>(*ap_exit)) << "AP exit index " << ap_exit->index();
  EXPECT_TRUE(std::holds_alternative<HaltExit>(*bsp_exit)) << "BSP exit index " << bsp_exit->index();
}

HV_EMU_SNIPPET(park_then_wake_ap, R"(
.code32
  mov dword ptr [0xfee00310], 0x01000000
  mov dword ptr [0xfee00300], 0x00004500
  mov dword ptr [0xfee00310], 0x01000000
  mov dword ptr [0xfee00300], 0x00004620
1: cmp byte ptr [0x5000], 1  # the AP parked
  jne 1b
  mov dword ptr [0xfee00310], 0x01000000
  mov dword ptr [0xfee00300], 0x00004500
  mov dword ptr [0xfee00310], 0x01000000
  mov dword ptr [0xfee00300], 0x00004621
  cli
  hlt
)")
HV_EMU_SNIPPET(ap_parks, R"(
.code16
  mov byte ptr [0x5000], 1  # DS base 0 after SIPI
  cli
  hlt
)")
HV_EMU_SNIPPET(ap_second_start, R"(
.code16
  mov al, 0x82
  out 0x82, al
  cli
  hlt
)")

// Firmware counts the APs and parks them with cli; hlt; the OS starts them
// again later with INIT-SIPI. A parked AP therefore sleeps (it does not end
// the run) while another CPU runs, and wakes on the INIT.
TEST(EmuVcpu, AParkedApplicationProcessorWakesOnInitSipi) {
  Machine m = make_machine(2);
  load(m.memory, kCodeAddress, park_then_wake_ap());
  load(m.memory, 0x20000, ap_parks());         // SIPI vector 0x20
  load(m.memory, 0x21000, ap_second_start());  // SIPI vector 0x21
  enter_flat32(*m.vcpus[0], kCodeAddress);
  BspThread bsp(m);
  auto ap_exit = m.vcpus[1]->run();
  ASSERT_TRUE(ap_exit.ok()) << ap_exit.error().message();
  auto* io = std::get_if<PortIoExit>(&*ap_exit);
  ASSERT_NE(io, nullptr) << "the parked AP did not restart (exit index " << ap_exit->index() << ")";
  EXPECT_EQ(io->port, 0x82);
  ap_exit = m.vcpus[1]->run();
  const Result<VcpuExit> bsp_exit = bsp.join();
  ASSERT_TRUE(ap_exit.ok() && bsp_exit.ok());
  EXPECT_TRUE(std::holds_alternative<HaltExit>(*ap_exit));
  EXPECT_TRUE(std::holds_alternative<HaltExit>(*bsp_exit));
}

TEST(EmuVcpu, RegistersRoundTrip) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  Registers r;
  r.rax = 1;
  r.rbx = 2;
  r.rcx = 3;
  r.rdx = 4;
  r.rsi = 5;
  r.rdi = 6;
  r.rsp = 7;
  r.rbp = 8;
  r.r8 = 9;
  r.r15 = 16;
  r.rip = 0x1234;
  r.rflags = 0x2 | 0x1 | 0x40 | 0x800;
  ASSERT_TRUE(cpu.set_registers(r).ok());
  Registers got = cpu.get_registers().value();
  EXPECT_EQ(got.rax, 1u);
  EXPECT_EQ(got.rbx, 2u);
  EXPECT_EQ(got.rcx, 3u);
  EXPECT_EQ(got.rdx, 4u);
  EXPECT_EQ(got.rsi, 5u);
  EXPECT_EQ(got.rdi, 6u);
  EXPECT_EQ(got.rsp, 7u);
  EXPECT_EQ(got.rbp, 8u);
  EXPECT_EQ(got.r8, 9u);
  EXPECT_EQ(got.r15, 16u);
  EXPECT_EQ(got.rip, 0x1234u);
  EXPECT_EQ(got.rflags, 0x843u);
  SystemRegisters s = cpu.get_system_registers().value();
  EXPECT_EQ(s.cs.base, 0xffff0000u);  // reset state
  ASSERT_TRUE(cpu.set_msrs({{0xc0000082, 0xffffffff81000000}}).ok());
  EXPECT_FALSE(cpu.set_msrs({{0xc0000082, 0x0000800000000000}}).ok());  // non-canonical LSTAR
}

// Busy guest code with state in every unit: GPRs, x87, SSE, an MSR, the
// LAPIC (software enabled, a periodic timer masked so it never fires) and
// the PIT. ECX counts up until the vCPU is kicked.
HV_EMU_SNIPPET(busy_with_state, R"(
.code32
  mov dword ptr [0xfee000f0], 0x1ff
  mov dword ptr [0xfee003e0], 0x3
  mov dword ptr [0xfee00320], 0x30041
  mov dword ptr [0xfee00380], 0x7fffffff
  mov al, 0x34
  out 0x43, al
  mov al, 0
  out 0x40, al
  out 0x40, al
  mov ecx, 0x277
  mov eax, 0x00070406
  mov edx, 0x00070106
  wrmsr
  fld1
  fldpi
  mov eax, 0x12345678
  movd xmm3, eax
  mov esi, 0xabcdef
  xor ecx, ecx
1: inc ecx
  jmp 1b
)")

// Runs `cpu` on a thread for `ms` milliseconds, then kicks it; the exit must
// be InterruptedExit.
void run_for(Vcpu& cpu, int ms) {
  Result<VcpuExit> exit = Error(ErrorCode::kInternal, "not run");
  std::thread runner([&] { exit = cpu.run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  cpu.kick();
  runner.join();
  ASSERT_TRUE(exit.ok()) << exit.error().message();
  ASSERT_TRUE(std::holds_alternative<InterruptedExit>(*exit)) << "exit index " << exit->index();
}

template <typename State, typename Encode, typename Decode>
State through_codec(const State& state, Encode encode, Decode decode, uint32_t version) {
  StateWriter out;
  encode(out, state);
  auto decoded = decode(out.bytes(), version);
  EXPECT_TRUE(decoded.ok()) << decoded.error().message();
  return decoded.ok() ? *decoded : State{};
}

// The fields that follow the clock, for comparing two saves taken `slack_ns`
// apart at most: each must have moved forward by no more than that.
void expect_clock_fields_advanced(VcpuState& later, const VcpuState& earlier, IrqchipState& later_chip,
                                  const IrqchipState& earlier_chip, uint64_t slack_ns) {
  EXPECT_GE(later_chip.clock_ns, earlier_chip.clock_ns);
  EXPECT_LE(later_chip.clock_ns - earlier_chip.clock_ns, slack_ns);
  EXPECT_GE(later.tsc, earlier.tsc);
  EXPECT_LE(later.tsc - earlier.tsc, slack_ns * 2);  // 2 GHz
  EXPECT_GE(later.lapic.timer_elapsed_ns, earlier.lapic.timer_elapsed_ns);
  EXPECT_LE(later.lapic.timer_elapsed_ns - earlier.lapic.timer_elapsed_ns, slack_ns);
  for (unsigned ch = 0; ch < 3; ++ch) {
    const uint64_t a = earlier_chip.pit.channels[ch].elapsed_ticks, b = later_chip.pit.channels[ch].elapsed_ticks;
    EXPECT_GE(b, a);
    EXPECT_LE(b - a, slack_ns / 800 + 1);  // 1.193182 MHz
  }
  later_chip.clock_ns = earlier_chip.clock_ns;
  later.tsc = earlier.tsc;
  later.lapic.timer_elapsed_ns = earlier.lapic.timer_elapsed_ns;
  for (unsigned ch = 0; ch < 3; ++ch)
    later_chip.pit.channels[ch].elapsed_ticks = earlier_chip.pit.channels[ch].elapsed_ticks;
}

TEST(EmuVcpuState, SaveEncodeDecodeRestoreIntoAFreshVmAndSaveAgainGivesTheSameState) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  load(m.memory, kCodeAddress, busy_with_state());
  enter_flat32(cpu, kCodeAddress);
  SystemRegisters sregs = cpu.get_system_registers().value();
  sregs.cr4 |= 1u << 9;  // OSFXSR: SSE instructions allowed
  ASSERT_TRUE(cpu.set_system_registers(sregs).ok());
  run_for(cpu, 30);
  auto saved = cpu.save_state();
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  auto chip = m.vm->save_irqchip();
  ASSERT_TRUE(chip.ok()) << chip.error().message();
  const uint64_t counted = saved->regs.rcx;
  ASSERT_GT(counted, 0u) << "the guest did not run";
  EXPECT_EQ(saved->regs.rsi, 0xabcdefu);
  EXPECT_EQ(saved->fpu.xmm[3][0], 0x78);
  EXPECT_EQ(saved->fpu.st[0][9], 0x40);  // pi = 0x4000 c90fdaa2...
  EXPECT_EQ(saved->fpu.st[1][9], 0x3f);  // 1.0 = 0x3fff 8000...
  EXPECT_TRUE(saved->lapic.timer_running);
  EXPECT_EQ(chip->pit.channels[0].mode, 2);
  const auto pat = std::find_if(saved->msrs.begin(), saved->msrs.end(), [](const Msr& m) { return m.index == 0x277; });
  ASSERT_NE(pat, saved->msrs.end());
  EXPECT_EQ(pat->value, 0x0007010600070406u);

  const VcpuState state = through_codec(*saved, encode_vcpu_state, decode_vcpu_state, kVcpuStateVersion);
  const IrqchipState chip_state =
      through_codec(*chip, encode_irqchip_state, decode_irqchip_state, kIrqchipStateVersion);

  // A second VM, created a while later so its clock reads less.
  Machine copy = make_machine(1);
  ASSERT_TRUE(
      copy.memory.write(GuestAddress(0), std::span(m.memory.host_pointer(GuestAddress(0), 2ull << 20), 2ull << 20))
          .ok());
  const auto restored_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(copy.vcpus[0]->restore_state(state).ok());
  ASSERT_TRUE(copy.vm->restore_irqchip(chip_state).ok());
  auto again = copy.vcpus[0]->save_state();
  auto chip_again = copy.vm->save_irqchip();
  ASSERT_TRUE(again.ok() && chip_again.ok());
  const uint64_t slack =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - restored_at).count();
  expect_clock_fields_advanced(*again, state, *chip_again, chip_state, slack);
  EXPECT_EQ(*again, state);
  EXPECT_EQ(*chip_again, chip_state);

  // And the copy computes on from where the first one stopped.
  run_for(*copy.vcpus[0], 10);
  EXPECT_GT(copy.vcpus[0]->get_registers().value().rcx, counted);
}

TEST(EmuVcpuState, StateIsRefusedInsideAnIoAccessAndReadableAfterTheKick) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  load(m.memory, kCodeAddress, in_then_spin());
  enter_flat32(cpu, kCodeAddress);
  auto exit = cpu.run();
  ASSERT_TRUE(std::holds_alternative<PortIoExit>(*exit));
  auto refused = cpu.save_state();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kBusy);
  EXPECT_NE(refused.error().message().find("InterruptedExit"), std::string::npos) << refused.error().message();
  cpu.kick();
  exit = cpu.run();
  ASSERT_TRUE(std::holds_alternative<InterruptedExit>(*exit));
  EXPECT_TRUE(cpu.save_state().ok());
}

TEST(EmuVcpuState, ARestoreItCannotRunFailsWithAMessageAndChangesNothing) {
  Machine m = make_machine(2);
  Vcpu& bsp = *m.vcpus[0];
  const VcpuState before = bsp.save_state().value();
  VcpuState good = before;
  good.regs.rax = 0x77;

  struct Case {
    void (*damage)(VcpuState&);
    const char* message;
  };
  const Case cases[] = {
      {[](VcpuState& s) { s.xcr0 = 7; }, "--accel kvm"},
      {[](VcpuState& s) {
         s.msrs.push_back({0x4b564d01, 0x1001});
       },
       "kvmclock"},
      {[](VcpuState& s) { s.lapic.apic_base &= ~(1ull << 8); }, "application processor"},
      {[](VcpuState& s) {
         s.msrs.push_back({0xc0000082, 0x0000800000000000});
       },
       "MSR 0xc0000082"},
  };
  for (const Case& c : cases) {
    VcpuState bad = good;
    c.damage(bad);
    auto r = bsp.restore_state(bad);
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_NE(r.error().message().find(c.message), std::string::npos) << r.error().message();
    EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
    VcpuState now = bsp.save_state().value();
    now.tsc = before.tsc;
    EXPECT_EQ(now, before) << "a failed restore (" << c.message << ") changed the vCPU";
  }

  IrqchipState chip = m.vm->save_irqchip().value();
  EXPECT_EQ(chip.vcpu_count, 2u);
  chip.vcpu_count = 1;
  auto r = m.vm->restore_irqchip(chip);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("--cpus 1"), std::string::npos) << r.error().message();
}

HV_EMU_SNIPPET(vector_0x41_handler, R"(
.code32
  mov al, 0x41
  out 0x80, al
  cli
  hlt
)")

// An event KVM was delivering when its state was taken (an external
// interrupt in the IDT-vectoring information) is delivered by the software
// CPU before its first instruction.
TEST(EmuVcpuState, AnInjectedInterruptIsDeliveredFirst) {
  Machine m = make_machine(1);
  Vcpu& cpu = *m.vcpus[0];
  load(m.memory, kCodeAddress, halt_forever());
  load(m.memory, kCodeAddress + 0x100, vector_0x41_handler());
  set_gate32(m.memory, 0x41, kCodeAddress + 0x100);
  enter_flat32(cpu, kCodeAddress);
  VcpuState s = cpu.save_state().value();
  s.events.interrupt_injected = true;
  s.events.interrupt_vector = 0x41;
  ASSERT_TRUE(cpu.restore_state(s).ok());
  EXPECT_TRUE(cpu.save_state().value().events.interrupt_injected) << "an undelivered event must be saved";
  auto exit = cpu.run();
  ASSERT_TRUE(exit.ok());
  auto* io = std::get_if<PortIoExit>(&*exit);
  ASSERT_NE(io, nullptr) << "exit index " << exit->index();
  EXPECT_EQ(io->port, 0x80);
  EXPECT_EQ(io->data[0], 0x41);
}

}  // namespace
}  // namespace hostvisor::emu
