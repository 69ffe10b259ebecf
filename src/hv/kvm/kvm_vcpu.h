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

namespace hostvisor::kvm {

class KvmVcpu final : public Vcpu {
 public:
  static Result<std::unique_ptr<KvmVcpu>> create(int vm_fd, unsigned index,
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
  // Reads the MSRs named by `indices`.
  Result<std::vector<Msr>> get_msrs(const std::vector<uint32_t>& indices);

  unsigned index() const override { return index_; }
  int fd() const { return fd_.get(); }

 private:
  KvmVcpu(UniqueFd fd, unsigned index, kvm_run* run, size_t run_size)
      : fd_(std::move(fd)), index_(index), run_(run), run_size_(run_size) {}

  std::string what(const char* ioctl_name) const;

  UniqueFd fd_;
  unsigned index_;
  kvm_run* run_;  // shared with the kernel; mapped for the vCPU's lifetime
  size_t run_size_;

  // The thread inside run(), for kick() to signal. Guarded by the mutex so
  // a kick only ever signals a thread that has not yet left run() (where the
  // no-op handler makes a stray signal harmless).
  std::mutex running_mutex_;
  std::optional<pthread_t> running_thread_;
};

}  // namespace hostvisor::kvm
