// A KVM virtual machine: guest RAM as memory slots, the in-kernel irqchip
// (PIC, IOAPIC, LAPICs) and PIT, vCPUs, and the irqfd/ioeventfd fast paths.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "base/fd.h"
#include "hv/hypervisor.h"
#include "hv/kvm/kvm_hypervisor.h"
#include "hv/kvm/kvm_interrupt_controller.h"

namespace hostvisor::kvm {

// Guest-physical pages KVM needs for itself on Intel (real-mode TSS, 3 pages,
// and the EPT identity map, 1 page), in the BIOS hole just below 4 GiB.
constexpr uint64_t kTssAddress = 0xfffbd000;
constexpr uint64_t kIdentityMapAddress = 0xfffbc000;

// Interrupt lines (InterruptController::set_irq_line and irqfd GSIs) are
// wired as on a PC chipset, the same as the emu backend and as the ACPI MADT
// describes: line n < 16 is ISA IRQ n, driving PIC input n and IOAPIC pin n,
// except ISA IRQ 0 (the in-kernel PIT), which drives IOAPIC pin 2 (MADT
// source override 0 -> GSI 2). Line 2 is the PIC cascade and drives nothing.
// Lines 16-23 drive IOAPIC pins 16-23 (PCI INTx). Lines from 24 up are free
// for MSI routes (set_msi_route).
constexpr uint32_t kIrqchipGsiCount = 24;
constexpr uint32_t kPitIsaIrq = 0;
constexpr uint32_t kPitIoApicPin = 2;
constexpr uint32_t kCascadeIrq = 2;
// Routing entries for those lines: 23 IOAPIC pins plus 15 PIC inputs.
constexpr uint32_t kIrqchipRouteCount = 23 + 15;

class KvmVm final : public Vm {
 public:
  static Result<std::unique_ptr<KvmVm>> create(int kvm, const VmConfig& config, const KvmCapabilities& caps,
                                               const std::vector<kvm_cpuid_entry2>& supported_cpuid,
                                               size_t vcpu_mmap_size);

  Result<void> map_memory(const GuestMemory& memory) override;
  Result<std::unique_ptr<Vcpu>> create_vcpu(unsigned index) override;
  InterruptController& interrupts() override { return *interrupts_; }
  Result<IrqchipState> save_irqchip() override;
  Result<void> restore_irqchip(const IrqchipState& state) override;

  bool supports_fast_eventfds() const override;
  Result<void> register_irqfd(const EventFd& event, uint32_t gsi) override;
  Result<void> unregister_irqfd(const EventFd& event, uint32_t gsi) override;
  Result<void> set_msi_route(uint32_t gsi, uint64_t address, uint32_t data) override;
  Result<void> remove_msi_route(uint32_t gsi) override;
  GsiRange msi_route_gsis() const override;
  Result<void> register_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                  std::optional<uint64_t> datamatch) override;
  Result<void> unregister_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                    std::optional<uint64_t> datamatch) override;

  int fd() const { return vm_.get(); }
  KvmInterruptController& kvm_interrupts() { return *interrupts_; }

 private:
  KvmVm(UniqueFd vm, const VmConfig& config, const KvmCapabilities& caps,
        const std::vector<kvm_cpuid_entry2>& supported_cpuid, size_t vcpu_mmap_size);

  Result<void> check_irqfd_gsi(uint32_t gsi) const;
  Result<kvm_ioeventfd> make_ioeventfd(const EventFd& event, uint64_t address, uint32_t length, bool is_pio,
                                       std::optional<uint64_t> datamatch) const;
  Result<void> apply_routing();  // with routing_mutex_ held

  UniqueFd vm_;
  VmConfig config_;
  KvmCapabilities caps_;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
  size_t vcpu_mmap_size_;
  std::unique_ptr<KvmInterruptController> interrupts_;

  std::mutex mutex_;  // guards the slot counter and the vCPU set
  uint32_t next_slot_ = 0;
  std::set<unsigned> created_vcpus_;

  std::mutex routing_mutex_;
  std::map<uint32_t, kvm_irq_routing_msi> msi_routes_;
};

}  // namespace hostvisor::kvm
