// The backend-neutral hypervisor interface: a Hypervisor makes Vms, a Vm
// maps guest RAM and makes Vcpus, a Vcpu runs until an exit.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "hv/cpu_state.h"
#include "hv/interrupts.h"
#include "hv/irqchip_state.h"
#include "hv/vcpu_exit.h"
#include "hv/vcpu_state.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class Vcpu {
 public:
  virtual ~Vcpu() = default;

  // Runs the vCPU on the calling thread until an exit. A run() after an I/O
  // exit completes that access with the data the VMM wrote into the exit.
  virtual Result<VcpuExit> run() = 0;

  // Thread-safe: makes a run() in progress (or the next one) return
  // InterruptedExit promptly. InterruptedExit means the vCPU stands at an
  // instruction boundary with no access pending: a run() after an I/O exit
  // with a kick pending first completes that access and executes nothing
  // more (KVM: immediate_exit), or returns the next I/O exit of the same
  // instruction. Its state may then be read until the next run().
  virtual void kick() = 0;

  virtual Result<Registers> get_registers() = 0;
  virtual Result<void> set_registers(const Registers& regs) = 0;
  virtual Result<SystemRegisters> get_system_registers() = 0;
  virtual Result<void> set_system_registers(const SystemRegisters& sregs) = 0;
  virtual Result<void> set_msrs(const std::vector<Msr>& msrs) = 0;

  // The vCPU's complete state (hv/vcpu_state.h), neutral between backends.
  // Valid only while the vCPU is stopped at an instruction boundary: after
  // kick() made run() return InterruptedExit, or before its first run()
  // (Machine::pause() guarantees it for every vCPU). A vCPU whose last exit
  // was a port or MMIO access is refused (kBusy) until run() completed it.
  // Not thread-safe against run(): the caller owns the stopped vCPU.
  //
  // Both backends implement these; the defaults are for test doubles.
  virtual Result<VcpuState> save_state() { return Error(ErrorCode::kUnsupported, "this vCPU cannot save its state"); }
  // Loads a state taken by save_state() on either backend, under the same
  // conditions. When the state needs something this vCPU lacks (the boot
  // processor's state into an AP or the other way round, XSAVE components
  // such as AVX the backend does not offer, kvmclock on the software CPU,
  // an MSR the backend refuses) it fails with a one-line message and leaves
  // the vCPU as it was. Restore the VM's irqchip (Vm::restore_irqchip) too.
  virtual Result<void> restore_state(const VcpuState& state) {
    (void)state;
    return Error(ErrorCode::kUnsupported, "this vCPU cannot restore a state");
  }

  virtual unsigned index() const = 0;
};

struct VmConfig {
  unsigned vcpu_count = 1;
};

class Vm {
 public:
  virtual ~Vm() = default;

  // Makes the regions of `memory` guest RAM. The memory must outlive the Vm.
  virtual Result<void> map_memory(const GuestMemory& memory) = 0;

  // Creates vCPU `index` (0 is the boot processor). Its APIC id is `index`.
  virtual Result<std::unique_ptr<Vcpu>> create_vcpu(unsigned index) = 0;

  virtual InterruptController& interrupts() = 0;

  // The VM-wide interrupt controllers, PIT and clock (hv/irqchip_state.h),
  // neutral between backends. Only while every vCPU is stopped as
  // Vcpu::save_state() requires. restore_irqchip() also sets the VM clock,
  // so the guest's time goes on from the saved one; it may come before or
  // after the vCPUs' restore_state(). Both backends implement these; the
  // defaults are for test doubles.
  virtual Result<IrqchipState> save_irqchip() {
    return Error(ErrorCode::kUnsupported, "this VM cannot save its interrupt controllers");
  }
  virtual Result<void> restore_irqchip(const IrqchipState& state) {
    (void)state;
    return Error(ErrorCode::kUnsupported, "this VM cannot restore interrupt controllers");
  }

  // Guest RAM in [gpa, gpa + length) was written by a device, not a vCPU.
  // Hardware keeps instruction fetch coherent with DMA; a backend that caches
  // decoded guest code must drop what it decoded from there (KVM has nothing to do).
  virtual void dma_written(uint64_t gpa, uint64_t length) {
    (void)gpa;
    (void)length;
  }

  // Fast paths for virtio (the device signals and is notified without a trip
  // through a vCPU thread). A backend without them keeps the defaults, and
  // devices fall back to the ordinary exit + InterruptController path.
  virtual bool supports_fast_eventfds() const { return false; }

  // Each signal of `event` raises GSI `gsi` (edge: raise and lower).
  virtual Result<void> register_irqfd(const EventFd& event, uint32_t gsi) {
    return Error(ErrorCode::kUnsupported, "irqfd is not supported by this CPU backend");
  }
  virtual Result<void> unregister_irqfd(const EventFd& event, uint32_t gsi) {
    return Error(ErrorCode::kUnsupported, "irqfd is not supported by this CPU backend");
  }

  // Routes GSI `gsi` to an MSI message, so an irqfd on that GSI delivers
  // the MSI (virtio-pci with MSI-X). remove_msi_route() undoes it.
  virtual Result<void> set_msi_route(uint32_t gsi, uint64_t address, uint32_t data) {
    return Error(ErrorCode::kUnsupported, "MSI routing is not supported by this CPU backend");
  }
  virtual Result<void> remove_msi_route(uint32_t gsi) {
    return Error(ErrorCode::kUnsupported, "MSI routing is not supported by this CPU backend");
  }
  // The GSIs set_msi_route() accepts, [first, end); empty without MSI routing.
  struct GsiRange {
    uint32_t first = 0;
    uint32_t end = 0;
  };
  virtual GsiRange msi_route_gsis() const { return {}; }

  // A guest write of `length` bytes (1, 2, 4 or 8; 0 = any length, MMIO only)
  // to `address` (a port when is_pio) signals `event` instead of exiting,
  // when the value equals `datamatch` (any value without one). The write is
  // then not seen by the bus. unregister_ioeventfd() takes the same arguments.
  virtual Result<void> register_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                          std::optional<uint64_t> datamatch) {
    return Error(ErrorCode::kUnsupported, "ioeventfd is not supported by this CPU backend");
  }
  virtual Result<void> unregister_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                            std::optional<uint64_t> datamatch) {
    return Error(ErrorCode::kUnsupported, "ioeventfd is not supported by this CPU backend");
  }
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual const char* name() const = 0;  // "kvm" or "emu"
  virtual Result<std::unique_ptr<Vm>> create_vm(const VmConfig& config) = 0;
};

}  // namespace hostvisor
