// A test kernel paused mid-computation on one backend finishes on the other
// with the same output as an uninterrupted run: the vCPU state (with the
// running LAPIC timer) and the irqchip state go through their byte encoding
// into a fresh VM of the other backend, with a copy of guest memory. The
// harness drives the backends directly (hv level): the kernel's only
// devices are COM1's transmit path and the debug-exit port, served here.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>

#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "base/state_codec.h"
#include "guest_cases.h"
#include "hv/accel.h"
#include "kvm_skip.h"
#include "memory/guest_memory.h"

namespace hostvisor::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kRamSize = 16ull << 20;
constexpr uint16_t kUartThr = arch::kCom1Port;
constexpr uint16_t kUartLsr = arch::kCom1Port + 5;
constexpr uint8_t kLsrTransmitterEmpty = 0x60;
// The kernel prints one line per step, 8 in all, then halts between timer
// interrupts. It is paused once it printed some lines: the kick comes from
// another thread, so it lands wherever the vCPU is by then (after 3 lines:
// in the next step's rounds, mostly; after all 8, a millisecond later: in
// HLT, waiting for the LAPIC timer).
constexpr size_t kSteps = 8;

std::string kernel_path() { return std::string(HV_GUESTS_DIR) + "/checksum.elf64"; }

// One VM with one vCPU running the kernel, and what it printed.
struct GuestVm {
  std::unique_ptr<Hypervisor> hypervisor;
  std::unique_ptr<Vm> vm;
  GuestMemory memory;
  std::unique_ptr<Vcpu> vcpu;
  std::string console;
  std::optional<int> exit_status;  // (value << 1) | 1 of the debug-exit write
};

Accel accel_of(const std::string& name) { return name == "kvm" ? Accel::kKvm : Accel::kEmu; }

// A VM of `accel` with empty RAM; `vcpu` not yet set up.
void create_vm(const std::string& accel, GuestVm& g) {
  auto hv = create_hypervisor(accel_of(accel));
  ASSERT_TRUE(hv.ok()) << hv.error().message();
  g.hypervisor = std::move(*hv);
  auto vm = g.hypervisor->create_vm(VmConfig{1});
  ASSERT_TRUE(vm.ok()) << vm.error().message();
  g.vm = std::move(*vm);
  const arch::MemoryLayout layout = arch::memory_layout(kRamSize).value();
  auto memory = GuestMemory::create(layout.regions());
  ASSERT_TRUE(memory.ok()) << memory.error().message();
  g.memory = std::move(*memory);
  ASSERT_TRUE(g.vm->map_memory(g.memory).ok());
  auto vcpu = g.vm->create_vcpu(0);
  ASSERT_TRUE(vcpu.ok()) << vcpu.error().message();
  g.vcpu = std::move(*vcpu);
}

void boot(const std::string& accel, GuestVm& g) {
  ASSERT_NO_FATAL_FAILURE(create_vm(accel, g));
  std::ifstream in(kernel_path(), std::ios::binary);
  ASSERT_TRUE(in) << "missing test kernel " << kernel_path();
  const std::vector<uint8_t> kernel{std::istreambuf_iterator<char>(in), {}};
  const arch::MemoryLayout layout = arch::memory_layout(kRamSize).value();
  auto setup = arch::load_kernel(g.memory, layout, {.kernel = kernel});
  ASSERT_TRUE(setup.ok()) << setup.error().message();
  ASSERT_TRUE(g.vcpu->set_system_registers(setup->sregs).ok());
  ASSERT_TRUE(g.vcpu->set_registers(setup->regs).ok());
}

// Runs until the kernel writes the debug-exit port, or, with
// `pause_after_lines`, until it was kicked once that many lines were out.
// Any other exit fails the test.
void run(GuestVm& g, size_t pause_after_lines = 0) {
  std::thread kicker;
  bool kick_sent = false;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the kernel ran for a minute; console:\n" << g.console;
    auto exit = g.vcpu->run();
    ASSERT_TRUE(exit.ok()) << exit.error().message();
    if (auto* io = std::get_if<PortIoExit>(&*exit)) {
      if (io->is_write && io->port == kUartThr) {
        g.console.push_back(static_cast<char>(io->data[0]));
        if (pause_after_lines != 0 && !kick_sent && count_occurrences(g.console, "\n") == pause_after_lines) {
          kick_sent = true;
          if (pause_after_lines == kSteps) {
            // After the last line: a moment later the kernel waits in HLT.
            kicker = std::thread([&g] {
              std::this_thread::sleep_for(1ms);
              g.vcpu->kick();
            });
          } else {
            // Mid-computation: kicked here, the next run() completes this
            // write and stops, so the pause lands right after the line
            // however loaded the host is (a kicker thread scheduled late let
            // the software CPU finish every step first).
            g.vcpu->kick();
          }
        }
      } else if (io->is_write && io->port == arch::kDebugExitPort) {
        g.exit_status = (io->data[0] << 1) | 1;
        break;
      } else if (!io->is_write) {
        std::fill(io->data.begin(), io->data.end(), io->port == kUartLsr ? kLsrTransmitterEmpty : 0xff);
      }
      continue;
    }
    if (std::holds_alternative<InterruptedExit>(*exit) && kick_sent) break;
    ASSERT_TRUE(std::holds_alternative<InterruptedExit>(*exit)) << "unexpected exit " << exit->index() << "; console:\n"
                                                                << g.console;
  }
  if (kicker.joinable()) kicker.join();
}

struct Param {
  const char* from;
  const char* to;
  size_t pause_after_lines;
};

class CrossBackendStateTest : public ::testing::TestWithParam<Param> {};

TEST_P(CrossBackendStateTest, PausedKernelFinishesInAFreshVmOfTheOtherBackendWithTheSameOutput) {
  const std::string from = GetParam().from, to = GetParam().to;
  if (from == "kvm" || to == "kvm") HV_SKIP_WITHOUT_DEV_KVM("the " + from + " -> " + to + " state test");

  // The reference: an uninterrupted run on the source backend.
  GuestVm reference;
  ASSERT_NO_FATAL_FAILURE(boot(from, reference));
  ASSERT_NO_FATAL_FAILURE(run(reference));
  ASSERT_EQ(reference.exit_status, kStatusPass) << reference.console;
  ASSERT_NE(reference.console.find("checksum "), std::string::npos) << reference.console;

  // The pause in HLT comes from a kicker thread 1 ms after the last line;
  // the kernel finishes 3 timer ticks later, which on KVM is 3 ms. A loaded
  // host can schedule the kicker later than that, so that case gets a few
  // attempts (the other pauses come from the vCPU's own thread).
  const size_t pause_after_lines = GetParam().pause_after_lines;
  const int attempts = pause_after_lines == kSteps ? 5 : 1;
  std::unique_ptr<GuestVm> attempt_vm;
  // Interrupts are on at the pause, or the kick landed inside the timer
  // handler (the tick in service): both move with the state. On a slow or
  // loaded KVM the 1 ms tick keeps the kernel in its handler much of the
  // time, and a kick can also land in the few instructions between the
  // handler's EOI and its IRET (interrupts off, nothing in service): that
  // case gets another attempt too.
  auto interrupt_state_moves = [](const auto& state) {
    const bool in_service =
        std::any_of(state.lapic.isr.begin(), state.lapic.isr.end(), [](uint32_t word) { return word != 0; });
    return (state.regs.rflags & x86::kRflagsIf) || in_service;
  };
  for (int attempt = 1;; ++attempt) {
    attempt_vm = std::make_unique<GuestVm>();  // destroys the previous attempt's VM
    ASSERT_NO_FATAL_FAILURE(boot(from, *attempt_vm));
    ASSERT_NO_FATAL_FAILURE(run(*attempt_vm, pause_after_lines));
    if (attempt == attempts) break;
    if (attempt_vm->exit_status.has_value()) {
      std::printf("attempt %d: the kernel finished before the kick landed; again\n", attempt);
      continue;
    }
    auto state = attempt_vm->vcpu->save_state();
    ASSERT_TRUE(state.ok()) << state.error().message();
    if (interrupt_state_moves(*state)) break;
    std::printf("attempt %d: the kick landed between the handler's EOI and its IRET; again\n", attempt);
  }
  GuestVm& source = *attempt_vm;
  ASSERT_FALSE(source.exit_status.has_value()) << "the kernel finished before the pause:\n" << source.console;
  if (pause_after_lines < kSteps) {
    ASSERT_LT(count_occurrences(source.console, "\n"), kSteps) << "the pause came after the computation:\n"
                                                               << source.console;
  }
  auto vcpu_state = source.vcpu->save_state();
  ASSERT_TRUE(vcpu_state.ok()) << vcpu_state.error().message();
  auto chip_state = source.vm->save_irqchip();
  ASSERT_TRUE(chip_state.ok()) << chip_state.error().message();
  EXPECT_TRUE(vcpu_state->lapic.timer_running) << "the kernel's LAPIC timer is not running at the pause";
  EXPECT_TRUE(interrupt_state_moves(*vcpu_state)) << "interrupts are off at the pause and no interrupt is in service";
  // The software CPU's timer ticks every 40 ms: a millisecond after the last
  // line it is in HLT. (KVM's ticks every millisecond; it may be between two.)
  if (pause_after_lines == kSteps && from == "emu") EXPECT_TRUE(vcpu_state->halted) << "not halted at the pause";

  StateWriter vcpu_bytes, chip_bytes;
  encode_vcpu_state(vcpu_bytes, *vcpu_state);
  encode_irqchip_state(chip_bytes, *chip_state);
  auto vcpu_decoded = decode_vcpu_state(vcpu_bytes.bytes(), kVcpuStateVersion);
  ASSERT_TRUE(vcpu_decoded.ok()) << vcpu_decoded.error().message();
  auto chip_decoded = decode_irqchip_state(chip_bytes.bytes(), kIrqchipStateVersion);
  ASSERT_TRUE(chip_decoded.ok()) << chip_decoded.error().message();

  GuestVm target;
  ASSERT_NO_FATAL_FAILURE(create_vm(to, target));
  for (const auto& region : source.memory.regions()) {
    ASSERT_TRUE(target.memory.write(region.start, std::span<const uint8_t>(region.host, region.size)).ok());
  }
  auto chip_restored = target.vm->restore_irqchip(*chip_decoded);
  ASSERT_TRUE(chip_restored.ok()) << chip_restored.error().message();
  auto vcpu_restored = target.vcpu->restore_state(*vcpu_decoded);
  ASSERT_TRUE(vcpu_restored.ok()) << vcpu_restored.error().message();
  ASSERT_NO_FATAL_FAILURE(run(target));

  EXPECT_EQ(target.exit_status, kStatusPass) << target.console;
  EXPECT_EQ(source.console + target.console, reference.console) << "paused on " << from << " after:\n"
                                                                << source.console << "finished on " << to << " with:\n"
                                                                << target.console;
  std::printf("%s -> %s: paused after %zu lines at rip %#llx%s, %zu more lines on %s\n", from.c_str(), to.c_str(),
              count_occurrences(source.console, "\n"), static_cast<unsigned long long>(vcpu_state->regs.rip),
              vcpu_state->halted ? " (halted)" : "", count_occurrences(target.console, "\n"), to.c_str());
}

INSTANTIATE_TEST_SUITE_P(Backends, CrossBackendStateTest,
                         ::testing::Values(Param{"kvm", "emu", 3}, Param{"emu", "kvm", 3}, Param{"emu", "emu", 3},
                                           Param{"kvm", "kvm", 3}, Param{"kvm", "emu", kSteps},
                                           Param{"emu", "kvm", kSteps}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(info.param.from) + "_to_" + info.param.to +
                                  (info.param.pause_after_lines == kSteps ? "_halted" : "_computing");
                         });

}  // namespace
}  // namespace hostvisor::testing
