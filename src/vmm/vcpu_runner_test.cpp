// The runner's state machine, on scripted vCPUs that behave as the backends
// promise (hv/hypervisor.h): a run() after an I/O exit completes that access
// first, a kick ends a run() at an instruction boundary, a vCPU in HLT
// sleeps in run() until an interrupt or a kick.
#include "vmm/vcpu_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "devices/bus/bus.h"

namespace hostvisor {
namespace {

using namespace std::chrono_literals;

constexpr uint16_t kCounterPort = 0x500;

// Remembers every value written to it, in order.
class RecordingPort final : public BusDevice {
 public:
  std::string_view name() const override { return "recording port"; }
  void read(uint64_t, std::span<uint8_t> data) override { std::memset(data.data(), 0, data.size()); }
  void write(uint64_t, std::span<const uint8_t> data) override {
    uint32_t value = 0;
    std::memcpy(&value, data.data(), std::min(data.size(), sizeof value));
    std::lock_guard lock(mutex_);
    values_.push_back(value);
  }
  std::vector<uint32_t> values() const {
    std::lock_guard lock(mutex_);
    return values_;
  }
  size_t count() const {
    std::lock_guard lock(mutex_);
    return values_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<uint32_t> values_;
};

// A vCPU that, while it runs, writes 0, 1, 2, ... (its index in the top
// byte) to kCounterPort, one OUT per run(). Its "rip" counts the OUTs completed: an OUT completes only
// in the next run(), as on the real backends. kHalted: it sleeps in run() (HLT
// with interrupts on) until interrupt() or a kick, then counts on.
// kHaltedForGood: its first run() returns HaltExit.
class ScriptedVcpu final : public Vcpu {
 public:
  enum class Mode { kCounting, kHalted, kHaltedForGood };
  explicit ScriptedVcpu(unsigned index, Mode mode = Mode::kCounting) : index_(index), mode_(mode) {}

  Result<VcpuExit> run() override {
    std::unique_lock lock(mutex_);
    if (io_pending_) {  // the access the VMM answered completes first
      io_pending_ = false;
      ++completed_;
    }
    if (mode_ == Mode::kHaltedForGood) return VcpuExit(HaltExit{});
    if (mode_ == Mode::kHalted) {
      cv_.wait(lock, [this] { return kicked_ || interrupted_; });
      if (interrupted_) mode_ = Mode::kCounting;  // the interrupt woke it: it goes on counting
    }
    if (kicked_) {
      kicked_ = false;
      return VcpuExit(InterruptedExit{});
    }
    value_ = index_ << 24 | completed_;
    io_pending_ = true;
    return VcpuExit(PortIoExit{kCounterPort, 4, 1, true, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&value_), 4)});
  }
  void kick() override {
    std::lock_guard lock(mutex_);
    kicked_ = true;
    cv_.notify_all();
  }
  // An interrupt for a vCPU in HLT (it wakes when next run).
  void interrupt() {
    std::lock_guard lock(mutex_);
    interrupted_ = true;
    cv_.notify_all();
  }
  bool io_pending() {
    std::lock_guard lock(mutex_);
    return io_pending_;
  }
  Result<Registers> get_registers() override {
    std::lock_guard lock(mutex_);
    Registers regs;
    regs.rip = completed_;
    return regs;
  }
  Result<void> set_registers(const Registers&) override { return ok(); }
  Result<SystemRegisters> get_system_registers() override { return SystemRegisters{}; }
  Result<void> set_system_registers(const SystemRegisters&) override { return ok(); }
  Result<void> set_msrs(const std::vector<Msr>&) override { return ok(); }
  unsigned index() const override { return index_; }

 private:
  const unsigned index_;
  std::mutex mutex_;
  std::condition_variable cv_;
  Mode mode_;
  bool kicked_ = false;
  bool interrupted_ = false;
  bool io_pending_ = false;
  uint32_t completed_ = 0;
  uint32_t value_ = 0;
};

class VcpuRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(pio_.insert(port_, kCounterPort, 4).ok()); }

  // One vCPU per mode; each writes to the same port.
  std::unique_ptr<VcpuRunner> make_runner(std::initializer_list<ScriptedVcpu::Mode> modes) {
    std::vector<Vcpu*> raw;
    for (auto mode : modes) {
      vcpus_.push_back(std::make_unique<ScriptedVcpu>(static_cast<unsigned>(vcpus_.size()), mode));
      raw.push_back(vcpus_.back().get());
    }
    return std::make_unique<VcpuRunner>(std::move(raw), pio_, mmio_);
  }

  // Waits until the port has seen more than `count` writes.
  bool port_passes(size_t count) {
    for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
      if (port_->count() > count) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  Bus pio_{"port I/O", 0xffff};
  Bus mmio_{"MMIO"};
  std::shared_ptr<RecordingPort> port_ = std::make_shared<RecordingPort>();
  std::vector<std::unique_ptr<ScriptedVcpu>> vcpus_;
};

TEST(RunTransitionTest, FollowsTheStateMachine) {
  using enum RunState;
  using enum RunRequest;
  EXPECT_EQ(run_transition(kRunning, kPause).next, kPaused);
  EXPECT_EQ(run_transition(kRunning, kPause).response, RunResponse::kDone);
  EXPECT_EQ(run_transition(kPaused, kPause).response, RunResponse::kUnchanged);
  EXPECT_EQ(run_transition(kPaused, kResume).next, kRunning);
  EXPECT_EQ(run_transition(kPaused, kResume).response, RunResponse::kDone);
  EXPECT_EQ(run_transition(kRunning, kResume).response, RunResponse::kUnchanged);
  EXPECT_EQ(run_transition(kRunning, kStop).next, kStopped);
  EXPECT_EQ(run_transition(kPaused, kStop).next, kStopped);
  for (RunRequest request : {kPause, kResume, kStop}) {
    EXPECT_EQ(run_transition(kStopped, request).next, kStopped);
    EXPECT_EQ(run_transition(kStopped, request).response, RunResponse::kStopped);
  }
}

TEST_F(VcpuRunnerTest, ResumeWithoutPauseChangesNothing) {
  auto runner = make_runner({ScriptedVcpu::Mode::kCounting});
  runner->start();
  EXPECT_EQ(runner->resume(), RunResponse::kUnchanged);
  EXPECT_EQ(runner->state(), RunState::kRunning);
  EXPECT_TRUE(port_passes(100));
  EXPECT_EQ(runner->registers(0).error().code(), ErrorCode::kBusy) << "registers are readable only while paused";
}

// Each pause leaves every vCPU with its last OUT completed (none half done)
// and its state readable; after many cycles each vCPU's writes are still
// exactly 0, 1, 2, ...: nothing lost or doubled.
TEST_F(VcpuRunnerTest, PauseCompletesPendingIoAndResumeContinues) {
  auto runner = make_runner({ScriptedVcpu::Mode::kCounting, ScriptedVcpu::Mode::kCounting});
  runner->start();
  for (int cycle = 0; cycle < 200; ++cycle) {
    ASSERT_TRUE(port_passes(port_->count())) << "the vCPUs do not run after resume " << cycle;
    ASSERT_EQ(runner->pause(), RunResponse::kDone);
    ASSERT_EQ(runner->state(), RunState::kPaused);
    const size_t seen = port_->count();
    uint64_t completed = 0;
    for (unsigned i = 0; i < 2; ++i) {
      EXPECT_FALSE(vcpus_[i]->io_pending()) << "vCPU " << i << " paused with an access half done";
      auto regs = runner->registers(i);
      ASSERT_TRUE(regs.ok()) << regs.error().message();
      completed += regs->rip;
    }
    EXPECT_EQ(completed, seen) << "every write the port saw is completed in the vCPUs' state";
    std::this_thread::sleep_for(cycle % 20 == 0 ? 20ms : 0ms);
    EXPECT_EQ(port_->count(), seen) << "a vCPU ran while paused";
    ASSERT_EQ(runner->resume(), RunResponse::kDone);
  }
  runner->stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "done"});
  runner->wait();
  std::vector<uint32_t> next(2, 0);
  for (uint32_t value : port_->values()) {
    const uint32_t vcpu = value >> 24;
    ASSERT_LT(vcpu, 2u);
    ASSERT_EQ(value & 0xffffff, next[vcpu]) << "vCPU " << vcpu << "'s writes lost or doubled one";
    ++next[vcpu];
  }
}

TEST_F(VcpuRunnerTest, PausesAHaltedVcpuAndResumeKeepsItsWakeUp) {
  auto runner = make_runner({ScriptedVcpu::Mode::kHalted});
  runner->start();
  std::this_thread::sleep_for(10ms);  // let it sleep in HLT
  ASSERT_EQ(runner->pause(), RunResponse::kDone);
  ASSERT_TRUE(runner->registers(0).ok());
  vcpus_[0]->interrupt();  // an interrupt while paused...
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(port_->count(), 0u) << "the halted vCPU ran while paused";
  ASSERT_EQ(runner->resume(), RunResponse::kDone);
  EXPECT_TRUE(port_passes(10)) << "... is taken after resume";
}

TEST_F(VcpuRunnerTest, PauseTwiceAnswersUnchangedAndStaysPaused) {
  auto runner = make_runner({ScriptedVcpu::Mode::kCounting});
  runner->start();
  ASSERT_TRUE(port_passes(10));
  EXPECT_EQ(runner->pause(), RunResponse::kDone);
  const size_t seen = port_->count();
  EXPECT_EQ(runner->pause(), RunResponse::kUnchanged);
  EXPECT_EQ(runner->state(), RunState::kPaused);
  EXPECT_TRUE(runner->registers(0).ok());
  EXPECT_EQ(port_->count(), seen);
  EXPECT_EQ(runner->resume(), RunResponse::kDone);
  EXPECT_EQ(runner->resume(), RunResponse::kUnchanged);
  EXPECT_TRUE(port_passes(seen));
}

TEST_F(VcpuRunnerTest, StopWhilePausedEndsTheRun) {
  auto runner = make_runner({ScriptedVcpu::Mode::kCounting, ScriptedVcpu::Mode::kHalted});
  runner->start();
  ASSERT_EQ(runner->pause(), RunResponse::kDone);
  runner->stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "stopped by Terminated"});
  runner->wait();  // returns only once every vCPU thread has ended
  EXPECT_EQ(runner->state(), RunState::kStopped);
  ASSERT_TRUE(runner->outcome().has_value());
  EXPECT_EQ(runner->outcome()->message, "stopped by Terminated");
  EXPECT_EQ(runner->pause(), RunResponse::kStopped);
  EXPECT_EQ(runner->resume(), RunResponse::kStopped);
  EXPECT_EQ(runner->registers(0).error().code(), ErrorCode::kBusy);
}

TEST_F(VcpuRunnerTest, AQuitReplacesAResetThatCameFirst) {
  auto runner = make_runner({ScriptedVcpu::Mode::kCounting});
  runner->start();
  runner->stop(RunOutcome::reset());
  runner->stop(RunOutcome::power_off());  // the first outcome stays...
  EXPECT_EQ(runner->outcome()->kind, RunOutcome::Kind::kReset);
  runner->stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, "quit"});  // ... except for a quit after a reset
  runner->wait();
  EXPECT_EQ(runner->outcome()->kind, RunOutcome::Kind::kUserQuit);
}

TEST_F(VcpuRunnerTest, PauseBeforeStartHoldsTheVcpus) {
  auto runner = make_runner({ScriptedVcpu::Mode::kCounting});
  EXPECT_EQ(runner->pause(), RunResponse::kDone);
  runner->start();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(port_->count(), 0u);
  EXPECT_EQ(runner->resume(), RunResponse::kDone);
  EXPECT_TRUE(port_passes(10));
}

TEST_F(VcpuRunnerTest, AVcpuHaltedForGoodCountsAsPaused) {
  auto runner = make_runner({ScriptedVcpu::Mode::kHaltedForGood, ScriptedVcpu::Mode::kCounting});
  runner->start();
  ASSERT_TRUE(port_passes(10));
  EXPECT_EQ(runner->pause(), RunResponse::kDone);
  EXPECT_TRUE(runner->registers(0).ok());
  EXPECT_EQ(runner->resume(), RunResponse::kDone);
  EXPECT_EQ(runner->state(), RunState::kRunning);
}

TEST_F(VcpuRunnerTest, EveryVcpuHaltedForGoodEndsTheRun) {
  auto runner = make_runner({ScriptedVcpu::Mode::kHaltedForGood, ScriptedVcpu::Mode::kHaltedForGood});
  runner->start();
  runner->wait();
  EXPECT_EQ(runner->outcome()->kind, RunOutcome::Kind::kGuestStuck);
}

}  // namespace
}  // namespace hostvisor
