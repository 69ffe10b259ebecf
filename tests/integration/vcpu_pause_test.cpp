// Pausing a running guest on each backend, through the VcpuRunner the
// Machine uses. The guest loops reading a counter device and writing each
// value back (port I/O or MMIO): every pause must find the vCPU at an
// instruction boundary with its last access completed — its RIP and RAX
// agree with what the device saw, which a read or write left half done (KVM
// without re-entering KVM_RUN with immediate_exit, emu with an instruction
// waiting to restart) would contradict — and after many pause/resume cycles
// the values written back are exactly 0, 1, 2, ...: nothing lost or doubled.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "devices/bus/bus.h"
#include "hv/accel.h"
#include "hv/testing/real_mode.h"
#include "kvm_skip.h"
#include "memory/guest_memory.h"
#include "vmm/vcpu_runner.h"

namespace hostvisor::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kRamSize = 0x80000;  // 512 KiB at 0; above it is MMIO
constexpr uint64_t kCodeAddress = 0x1000;
constexpr uint8_t kCounterPort = 0xe0;      // in eax, 0xe0: the next value
constexpr uint8_t kEchoPort = 0xe4;         // out 0xe4, eax: the echo
constexpr uint64_t kCounterMmio = 0x90000;  // the same device in MMIO: read +0, echo +4
constexpr uint64_t kCounterMmioSegment = 0x9000;

// Reads return 0, 1, 2, ...; writes at offset 4 are recorded.
class CounterDevice final : public BusDevice {
 public:
  std::string_view name() const override { return "counter"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    std::lock_guard lock(mutex_);
    EXPECT_EQ(offset, 0u);
    const uint32_t value = reads_++;
    std::memcpy(data.data(), &value, std::min(data.size(), sizeof value));
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    std::lock_guard lock(mutex_);
    EXPECT_EQ(offset, 4u);
    uint32_t value = 0;
    std::memcpy(&value, data.data(), std::min(data.size(), sizeof value));
    echoes_.push_back(value);
  }
  uint32_t reads() {
    std::lock_guard lock(mutex_);
    return reads_;
  }
  std::vector<uint32_t> echoes() {
    std::lock_guard lock(mutex_);
    return echoes_;
  }

 private:
  std::mutex mutex_;
  uint32_t reads_ = 0;
  std::vector<uint32_t> echoes_;
};

// One guest program: real mode, a loop of a read and a write of the counter.
struct Program {
  std::vector<uint8_t> code;  // at kCodeAddress
  uint64_t write_rip;         // the write's address: the vCPU stands here between the two accesses
  bool mmio;
};

Program port_io_program() {
  return {{
              0x66, 0xe5, kCounterPort,  // 0: in eax, 0xe0
              0x66, 0xe7, kEchoPort,     // 3: out 0xe4, eax
              0xeb, 0xf8,                // 6: jmp 0
          },
          kCodeAddress + 3,
          false};
}

Program mmio_program() {
  return {{
              0xb8, 0x00, 0x90,        // 0: mov ax, 0x9000
              0x8e, 0xd8,              // 3: mov ds, ax
              0x66, 0xa1, 0x00, 0x00,  // 5: mov eax, [0]  (0x90000)
              0x66, 0xa3, 0x04, 0x00,  // 9: mov [4], eax  (0x90004)
              0xeb, 0xf6,              // 13: jmp 5
          },
          kCodeAddress + 9,
          true};
}

struct Param {
  const char* accel;
  bool mmio;
};

class VcpuPauseTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const bool kvm = std::string(GetParam().accel) == "kvm";
    if (kvm) HV_SKIP_WITHOUT_DEV_KVM("the kvm pause test");
    auto hv = create_hypervisor(kvm ? Accel::kKvm : Accel::kEmu);
    ASSERT_TRUE(hv.ok()) << hv.error().message();
    hypervisor_ = std::move(*hv);
    auto vm = hypervisor_->create_vm(VmConfig{1});
    ASSERT_TRUE(vm.ok()) << vm.error().message();
    vm_ = std::move(*vm);
    auto memory = GuestMemory::create({{GuestAddress(0), kRamSize}});
    ASSERT_TRUE(memory.ok()) << memory.error().message();
    memory_ = std::move(*memory);
    ASSERT_TRUE(vm_->map_memory(memory_).ok());
    auto vcpu = vm_->create_vcpu(0);
    ASSERT_TRUE(vcpu.ok()) << vcpu.error().message();
    vcpu_ = std::move(*vcpu);

    program_ = GetParam().mmio ? mmio_program() : port_io_program();
    ASSERT_TRUE(memory_.write(GuestAddress(kCodeAddress), program_.code).ok());
    ASSERT_TRUE(enter_real_mode(*vcpu_, kCodeAddress).ok());  // interrupts off: nothing but the loop runs
    if (program_.mmio) {
      ASSERT_TRUE(mmio_.insert(counter_, kCounterMmio, 8).ok());
    } else {
      ASSERT_TRUE(pio_.insert(counter_, kCounterPort, 8).ok());
    }
  }

  // Waits until the guest has made `reads` reads.
  bool reaches(uint32_t reads) {
    for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;) {
      if (counter_->reads() >= reads) return true;
      std::this_thread::sleep_for(100us);
    }
    return false;
  }

  std::unique_ptr<Hypervisor> hypervisor_;
  std::unique_ptr<Vm> vm_;
  GuestMemory memory_;
  std::unique_ptr<Vcpu> vcpu_;
  Bus pio_{"port I/O", 0xffff};
  Bus mmio_{"MMIO"};
  std::shared_ptr<CounterDevice> counter_ = std::make_shared<CounterDevice>();
  Program program_;
};

TEST_P(VcpuPauseTest, PausedGuestStandsAtAnInstructionBoundaryAndResumesWithoutLosingAnAccess) {
  static_assert(kCounterMmio == kCounterMmioSegment << 4);
  const bool kvm = std::string(GetParam().accel) == "kvm";
  const int cycles = kvm ? 60 : 300;  // kvm_pvm runs ~1M guest instructions a second
  VcpuRunner runner({vcpu_.get()}, pio_, mmio_);
  runner.start();
  std::mt19937 random(20261204);
  int between_accesses = 0;  // pauses that found the read done and the write not yet
  for (int cycle = 0; cycle < cycles; ++cycle) {
    ASSERT_TRUE(reaches(counter_->reads() + 1 + random() % 8)) << "the guest does not run after resume " << cycle;
    ASSERT_EQ(runner.pause(), RunResponse::kDone);

    auto regs = runner.registers(0);
    ASSERT_TRUE(regs.ok()) << regs.error().message();
    auto sregs = runner.system_registers(0);
    ASSERT_TRUE(sregs.ok()) << sregs.error().message();
    EXPECT_EQ(sregs->cs.base, 0u);
    const uint32_t reads = counter_->reads();
    const size_t echoes = counter_->echoes().size();
    const uint64_t eax = regs->rax & 0xffffffff;
    ASSERT_GE(reads, 1u);
    ASSERT_GE(regs->rip, kCodeAddress);
    ASSERT_LT(regs->rip, kCodeAddress + program_.code.size());
    // Whatever the device answered is in EAX (a read half done would leave the previous value).
    EXPECT_EQ(eax, reads - 1) << "cycle " << cycle << ", rip " << std::hex << regs->rip;
    if (regs->rip == program_.write_rip) {
      ++between_accesses;
      EXPECT_EQ(echoes + 1, reads) << "cycle " << cycle << ": stopped before the write, yet the device saw it";
    } else {
      EXPECT_EQ(echoes, reads) << "cycle " << cycle << ", rip " << std::hex << regs->rip
                               << ": past the write, yet the device did not see it (or the read is half done)";
    }
    if (cycle % 10 == 0) {
      std::this_thread::sleep_for(5ms);
      EXPECT_EQ(counter_->reads(), reads) << "the guest ran while paused";
    }
    ASSERT_EQ(runner.resume(), RunResponse::kDone);
  }
  runner.stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "test done"});
  runner.wait();
  const std::vector<uint32_t> echoes = counter_->echoes();
  ASSERT_GE(echoes.size(), static_cast<size_t>(cycles));
  for (size_t i = 0; i < echoes.size(); ++i) ASSERT_EQ(echoes[i], i) << "an access was lost or repeated";
  std::printf("%s %s: %d pauses, %d between the read and the write, %zu values echoed\n", GetParam().accel,
              program_.mmio ? "mmio" : "pio", cycles, between_accesses, echoes.size());
}

INSTANTIATE_TEST_SUITE_P(Backends, VcpuPauseTest,
                         ::testing::Values(Param{"emu", false}, Param{"emu", true}, Param{"kvm", false},
                                           Param{"kvm", true}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(info.param.accel) + (info.param.mmio ? "_mmio" : "_pio");
                         });

}  // namespace
}  // namespace hostvisor::testing
