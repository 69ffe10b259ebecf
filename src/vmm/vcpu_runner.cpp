#include "vmm/vcpu_runner.h"

#include <string>
#include <variant>

#include "base/log.h"
#include "devices/bus/bus.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

void dispatch_port_io(const Bus& bus, PortIoExit& io) {
  for (uint32_t i = 0; i < io.count; ++i) {
    auto data = io.data.subspan(static_cast<size_t>(i) * io.size, io.size);
    const bool claimed = io.is_write ? bus.write(io.port, data) : bus.read(io.port, data);
    if (!claimed) HV_LOG_DEBUG("unclaimed port {} {:#x}", io.is_write ? "write" : "read", io.port);
  }
}

void dispatch_mmio(const Bus& bus, MmioExit& mmio) {
  const bool claimed = mmio.is_write ? bus.write(mmio.address, mmio.data) : bus.read(mmio.address, mmio.data);
  if (!claimed) HV_LOG_DEBUG("unclaimed MMIO {} {:#x}", mmio.is_write ? "write" : "read", mmio.address);
}

std::string vcpu_name(unsigned index) { return "vCPU " + std::to_string(index); }

}  // namespace

const char* to_string(RunResponse response) {
  switch (response) {
    case RunResponse::kDone: return "done";
    case RunResponse::kUnchanged: return "unchanged";
    case RunResponse::kStopped: return "stopped";
    case RunResponse::kSuperseded: return "superseded";
  }
  return "?";
}

VcpuRunner::VcpuRunner(std::vector<Vcpu*> vcpus, Bus& pio_bus, Bus& mmio_bus)
    : vcpus_(std::move(vcpus)),
      exit_counts_(std::make_unique<AtomicExitCounts[]>(vcpus_.size())),
      pio_bus_(pio_bus),
      mmio_bus_(mmio_bus) {}

std::vector<VcpuExitCounts> VcpuRunner::exit_counts() const {
  std::vector<VcpuExitCounts> counts(vcpus_.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i].exits = exit_counts_[i].exits.load(std::memory_order_relaxed);
    counts[i].io_exits = exit_counts_[i].io_exits.load(std::memory_order_relaxed);
    counts[i].mmio_exits = exit_counts_[i].mmio_exits.load(std::memory_order_relaxed);
  }
  return counts;
}

VcpuRunner::~VcpuRunner() {
  stop(RunOutcome{RunOutcome::Kind::kUserQuit, 0, ""});
  wait();
}

void VcpuRunner::start() {
  std::lock_guard lock(mutex_);
  if (!threads_.empty() || state_ == RunState::kStopped) return;
  // A pause requested before now already kicked the vCPUs: each first run()
  // returns at once and the thread parks.
  for (unsigned i = 0; i < vcpus_.size(); ++i) threads_.emplace_back([this, i] { vcpu_thread(i); });
}

RunResponse VcpuRunner::pause() {
  std::unique_lock lock(mutex_);
  const RunTransition t = run_transition(state_, RunRequest::kPause);
  if (t.response == RunResponse::kStopped) return t.response;
  if (t.response == RunResponse::kDone) {
    state_ = t.next;
    for (Vcpu* vcpu : vcpus_) vcpu->kick();
  }
  changed_.wait(lock, [this] { return state_ != RunState::kPaused || quiescent(); });
  if (state_ == RunState::kStopped) return RunResponse::kStopped;
  if (state_ == RunState::kRunning) return RunResponse::kSuperseded;
  return t.response;
}

RunResponse VcpuRunner::resume() {
  {
    std::lock_guard lock(mutex_);
    const RunTransition t = run_transition(state_, RunRequest::kResume);
    if (t.response != RunResponse::kDone) return t.response;
    state_ = t.next;
  }
  changed_.notify_all();
  return RunResponse::kDone;
}

void VcpuRunner::stop(RunOutcome outcome) {
  {
    std::lock_guard lock(mutex_);
    const RunTransition t = run_transition(state_, RunRequest::kStop);
    if (t.response == RunResponse::kStopped) {
      if (outcome_ && outcome_->kind == RunOutcome::Kind::kReset && outcome.kind == RunOutcome::Kind::kUserQuit)
        outcome_ = std::move(outcome);
      return;
    }
    state_ = t.next;
    outcome_ = std::move(outcome);
  }
  changed_.notify_all();
  for (Vcpu* vcpu : vcpus_) vcpu->kick();
}

void VcpuRunner::wait() {
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return state_ == RunState::kStopped; });
  }
  // Only this thread joins; threads_ no longer changes once stopped.
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

std::optional<RunOutcome> VcpuRunner::outcome() const {
  std::lock_guard lock(mutex_);
  return outcome_;
}

RunState VcpuRunner::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

Result<Vcpu*> VcpuRunner::paused_vcpu(unsigned index) {
  if (index >= vcpus_.size())
    return Error(ErrorCode::kInvalidArgument,
                 vcpu_name(index) + " does not exist (the machine has " + std::to_string(vcpus_.size()) + ")");
  if (state_ != RunState::kPaused || !quiescent())
    return Error(ErrorCode::kBusy, vcpu_name(index) + "'s state is readable only while the machine is paused");
  return vcpus_[index];
}

// The mutex is held while reading, so a resume cannot start the vCPU under the reader.
Result<Registers> VcpuRunner::registers(unsigned index) {
  std::lock_guard lock(mutex_);
  Vcpu* vcpu = HV_TRY(paused_vcpu(index));
  return vcpu->get_registers();
}

Result<SystemRegisters> VcpuRunner::system_registers(unsigned index) {
  std::lock_guard lock(mutex_);
  Vcpu* vcpu = HV_TRY(paused_vcpu(index));
  return vcpu->get_system_registers();
}

void VcpuRunner::vcpu_thread(unsigned index) {
  sandbox::install_thread_filter(sandbox::ThreadKind::kVcpu);
  Vcpu& vcpu = *vcpus_[index];
  for (;;) {
    auto exit = vcpu.run();
    if (!exit) {
      stop(RunOutcome{RunOutcome::Kind::kFailure, 1, vcpu_name(index) + ": " + exit.error().message()});
      break;
    }
    if (!dispatch(index, *exit)) break;
  }
  {
    std::lock_guard lock(mutex_);
    ++ended_;
  }
  changed_.notify_all();
}

// The hot path of a booting guest on emu: every device access comes through
// here, so I/O takes no lock and allocates nothing. Pauses and stops reach
// the thread as kicks (InterruptedExit), never by polling per exit.
bool VcpuRunner::dispatch(unsigned index, VcpuExit& exit) {
  AtomicExitCounts& counts = exit_counts_[index];
  counts.exits.fetch_add(1, std::memory_order_relaxed);
  return std::visit(
      Overloaded{
          [&](PortIoExit& io) {
            counts.io_exits.fetch_add(1, std::memory_order_relaxed);
            dispatch_port_io(pio_bus_, io);
            return true;
          },
          [&](MmioExit& mmio) {
            counts.mmio_exits.fetch_add(1, std::memory_order_relaxed);
            dispatch_mmio(mmio_bus_, mmio);
            return true;
          },
          [&](InterruptedExit&) { return park_while_paused(); },
          [&](HaltExit&) {
            wait_halted_for_good();
            return false;
          },
          [&](SystemEventExit& event) {
            switch (event.kind) {
              case SystemEventExit::Kind::kPowerOff: stop(RunOutcome::power_off()); break;
              case SystemEventExit::Kind::kReset: stop(RunOutcome::reset()); break;
              case SystemEventExit::Kind::kTripleFault:
                stop(RunOutcome{RunOutcome::Kind::kTripleFault, 4,
                                "the guest triple-faulted on " + vcpu_name(index) + " (CPU shutdown)"});
                break;
            }
            return false;
          },
          [&](FailureExit& failure) {
            stop(RunOutcome{RunOutcome::Kind::kFailure, 1, vcpu_name(index) + " cannot continue: " + failure.detail});
            return false;
          },
      },
      exit);
}

bool VcpuRunner::park_while_paused() {
  std::unique_lock lock(mutex_);
  if (state_ == RunState::kPaused) {
    ++parked_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return state_ != RunState::kPaused; });
    --parked_;
  }
  return state_ != RunState::kStopped;
}

// Linux halts the other CPUs with interrupts off before it powers off; only
// when every vCPU is halted so can the guest never go on.
void VcpuRunner::wait_halted_for_good() {
  std::unique_lock lock(mutex_);
  if (halted_ + 1 == vcpus_.size()) {
    lock.unlock();
    stop(RunOutcome{RunOutcome::Kind::kGuestStuck, 4,
                    "every vCPU halted with interrupts disabled: the guest can never continue"});
    return;
  }
  ++halted_;
  changed_.notify_all();  // a pause counts this vCPU as stopped
  changed_.wait(lock, [this] { return state_ == RunState::kStopped; });
  --halted_;
}

}  // namespace hostvisor
