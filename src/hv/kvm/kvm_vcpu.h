// A KVM vCPU: its fd, its mapped kvm_run page, CPUID and MSRs set at
// creation, and run()/kick() built on KVM_RUN and immediate_exit.
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <mutex>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "hv/hypervisor.h"
#include "hv/kvm/kvm_hypervisor.h"

namespace hostvisor::kvm {

class KvmVcpu final : public Vcpu {
 public:
  static Result<std::unique_ptr<KvmVcpu>> create(int vm_fd, unsigned index, const KvmCapabilities& caps,
                                                 const std::vector<kvm_cpuid_entry2>& supported_cpuid, size_t run_size);
  ~KvmVcpu() override;
  KvmVcpu(const KvmVcpu&) = delete;
  KvmVcpu& operator=(const KvmVcpu&) = delete;

  Result<VcpuExit> run() override;
  void kick() override;

  Result<Registers> get_registers() override;
  Result<void> set_registers(const Registers& regs) override;
  Result<SystemRegisters> get_system_registers() override;
  Result<void> set_system_registers(const SystemRegisters& sregs) override;
  Result<void> set_msrs(const std::vector<Msr>& msrs) override;
  Result<VcpuState> save_state() override;
  Result<void> restore_state(const VcpuState& state) override;
  // Reads the MSRs named by `indices`.
  Result<std::vector<Msr>> get_msrs(const std::vector<uint32_t>& indices);

  unsigned index() const override { return index_; }
  int fd() const { return fd_.get(); }
  // False once restore_state() found that this KVM ignores a new guest TSC
  // (kvm_pvm gives its guests the host's TSC); the restore then goes on with
  // a warning, and the guest's TSC keeps counting from the host's.
  bool tsc_settable() const { return tsc_settable_; }

 private:
  KvmVcpu(UniqueFd fd, unsigned index, kvm_run* run, size_t run_size, const KvmCapabilities& caps,
          uint64_t supported_xcr0)
      : fd_(std::move(fd)),
        index_(index),
        run_(run),
        run_size_(run_size),
        caps_(caps),
        supported_xcr0_(supported_xcr0) {}

  std::string what(const char* ioctl_name) const;
  Result<void> apply_state(const VcpuState& state);
  Result<FpuState> get_fpu();
  Result<void> set_fpu(const FpuState& fpu, uint64_t xcr0);
  Result<void> set_tsc(uint64_t tsc);

  UniqueFd fd_;
  unsigned index_;
  kvm_run* run_;  // shared with the kernel; mapped for the vCPU's lifetime
  size_t run_size_;
  KvmCapabilities caps_;
  uint64_t supported_xcr0_;  // XCR0 bits KVM offers the guest (CPUID 0xD.0)
  // The last exit was a PIO/MMIO the next run() completes: state is not at
  // an instruction boundary until then.
  bool access_pending_ = false;
  bool tsc_settable_ = true;

  // The thread inside run(), for kick() to signal. Guarded by the mutex so
  // a kick only ever signals a thread that has not yet left run() (where the
  // no-op handler makes a stray signal harmless).
  std::mutex running_mutex_;
  std::optional<pthread_t> running_thread_;
};

}  // namespace hostvisor::kvm
