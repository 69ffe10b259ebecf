// The vCPU threads of a machine, one per vCPU: each runs its Vcpu and
// dispatches the exits (port I/O and MMIO to the buses, halts, the guest's
// system events, failures), and all of them follow one run state, an
// explicit state machine moved by requests that each get an answer:
//
//   Running --pause--> Paused --resume--> Running
//   Running, Paused --stop--> Stopped (final)
//
// pause() answers only once every vCPU is parked at an instruction boundary
// with no access half done (or halted for good, or its thread ended); until
// resume() the vCPUs' registers are readable (registers()). A vCPU is never
// parked straight after an I/O exit: it is re-entered with the pause's kick
// still pending, and each backend finishes the access and stops before the
// next instruction (KVM: KVM_RUN with immediate_exit set completes a pending
// PIO/MMIO, as the KVM API requires before state is read; emu: a kick is
// taken only once no instruction waits to be restarted). Only a run() that a
// kick ended (InterruptedExit) parks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/result.h"
#include "hv/hypervisor.h"
#include "vmm/run_outcome.h"

namespace hostvisor {

class Bus;

enum class RunState { kRunning, kPaused, kStopped };
enum class RunRequest { kPause, kResume, kStop };

// The answer to a request.
enum class RunResponse {
  kDone,        // the state changed as asked (a pause: every vCPU is now parked)
  kUnchanged,   // it already was so: pause while paused, resume while running
  kStopped,     // the run has ended, before or while the request waited
  kSuperseded,  // a resume came while the pause waited for the vCPUs
};

struct RunTransition {
  RunState next;
  RunResponse response;
};

// The state machine's rules, without threads.
constexpr RunTransition run_transition(RunState from, RunRequest request) {
  if (from == RunState::kStopped) return {RunState::kStopped, RunResponse::kStopped};
  switch (request) {
    case RunRequest::kPause:
      return {RunState::kPaused, from == RunState::kPaused ? RunResponse::kUnchanged : RunResponse::kDone};
    case RunRequest::kResume:
      return {RunState::kRunning, from == RunState::kRunning ? RunResponse::kUnchanged : RunResponse::kDone};
    case RunRequest::kStop: return {RunState::kStopped, RunResponse::kDone};
  }
  return {from, RunResponse::kUnchanged};
}

const char* to_string(RunResponse response);

// How often a vCPU came back to the VMM (the metrics of the control socket):
// every exit, and of those the port I/O and MMIO accesses the buses served.
struct VcpuExitCounts {
  uint64_t exits = 0, io_exits = 0, mmio_exits = 0;
};

class VcpuRunner {
 public:
  // `vcpus` and the buses must outlive the runner. Nothing runs until start().
  VcpuRunner(std::vector<Vcpu*> vcpus, Bus& pio_bus, Bus& mmio_bus);
  // Stops the run (as a quit) and joins the vCPU threads.
  ~VcpuRunner();
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  // Starts one thread per vCPU (in the state the run is in: a pause or stop
  // requested before start() holds). Once.
  void start();

  // Thread-safe requests. pause() blocks until every vCPU is parked (or
  // the run stopped); a second pause() waits the same way.
  RunResponse pause();
  RunResponse resume();
  // Ends the run with `outcome`. The first outcome stays, except that a
  // quit (stop signal, Ctrl-A x) replaces a guest reset: the caller would
  // otherwise reboot a guest the user asked to stop.
  void stop(RunOutcome outcome);

  // Blocks until the run has stopped and every vCPU thread has ended.
  void wait();
  // The outcome so far (nullopt while running).
  std::optional<RunOutcome> outcome() const;
  RunState state() const;

  // Each vCPU's counts so far. Thread-safe.
  std::vector<VcpuExitCounts> exit_counts() const;

  // vCPU `index`'s state, only while paused (kBusy otherwise).
  Result<Registers> registers(unsigned index);
  Result<SystemRegisters> system_registers(unsigned index);
  // Runs `read(Vcpu&)` on vCPU `index` only while paused (kBusy otherwise);
  // the runner's lock keeps a resume from starting the vCPU meanwhile.
  template <typename Read>
  auto read_paused(unsigned index, Read&& read) -> decltype(read(std::declval<Vcpu&>())) {
    std::lock_guard lock(mutex_);
    Vcpu* vcpu = HV_TRY(paused_vcpu(index));
    return read(*vcpu);
  }

 private:
  void vcpu_thread(unsigned index);
  // Handles one exit; false when the vCPU thread must end.
  bool dispatch(unsigned index, VcpuExit& exit);
  // After a kick: parks while paused. False once the run has stopped.
  bool park_while_paused();
  // A vCPU that can never wake (HLT with interrupts off) waits for the stop.
  void wait_halted_for_good();
  // Every started vCPU is parked, halted for good or gone. Needs mutex_.
  bool quiescent() const { return parked_ + halted_ + ended_ == threads_.size(); }
  Result<Vcpu*> paused_vcpu(unsigned index);

  const std::vector<Vcpu*> vcpus_;
  // Bumped only by the vCPU's own thread, read by any (relaxed: counters).
  struct AtomicExitCounts {
    std::atomic<uint64_t> exits{0}, io_exits{0}, mmio_exits{0};
  };
  std::unique_ptr<AtomicExitCounts[]> exit_counts_;
  Bus& pio_bus_;
  Bus& mmio_bus_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  RunState state_ = RunState::kRunning;
  size_t parked_ = 0;  // vCPU threads in park_while_paused()
  size_t halted_ = 0;  // ... in wait_halted_for_good()
  size_t ended_ = 0;   // ... that returned
  std::optional<RunOutcome> outcome_;
  std::vector<std::thread> threads_;
};

}  // namespace hostvisor
