// The KVM backend's entry point: an open /dev/kvm whose API version and
// capabilities have been checked, making KvmVms.
#pragma once

#include <linux/kvm.h>

#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "hv/hypervisor.h"

namespace hostvisor::kvm {

// What the host's KVM offers beyond the capabilities every VM needs.
struct KvmCapabilities {
  unsigned max_vcpus = 0;
  unsigned max_memory_slots = 0;
  bool irqfd = false;
  bool ioeventfd = false;
  bool ioeventfd_any_length = false;
  bool signal_msi = false;
  unsigned irq_routing_entries = 0;  // how many GSI routes KVM_SET_GSI_ROUTING takes
  // vCPU state (Vcpu::save_state): the XSAVE buffer's size (0: KVM has no
  // XSAVE, the FPU goes through KVM_GET/SET_FPU), whether KVM_GET_XSAVE2 is
  // needed for it, XCRs, TSC rate control.
  size_t xsave_size = 0;
  bool xsave2 = false;
  bool xcrs = false;
  bool tsc_control = false;
  // The MSRs a vCPU state carries that this KVM knows (KVM_GET_MSR_INDEX_LIST
  // intersected with saved_msr_indices(), in that order), then the TSC and
  // TSC_DEADLINE where KVM has them.
  std::vector<uint32_t> state_msrs;
};

class KvmHypervisor final : public Hypervisor {
 public:
  // Opens `device` (normally /dev/kvm) and checks it can run our VMs; the
  // error says what the user should do when it cannot.
  static Result<std::unique_ptr<KvmHypervisor>> open(const std::string& device = "/dev/kvm");

  const char* name() const override { return "kvm"; }
  Result<std::unique_ptr<Vm>> create_vm(const VmConfig& config) override;

  const KvmCapabilities& capabilities() const { return caps_; }
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const { return supported_cpuid_; }

 private:
  KvmHypervisor(UniqueFd kvm, size_t vcpu_mmap_size, KvmCapabilities caps, std::vector<kvm_cpuid_entry2> cpuid)
      : kvm_(std::move(kvm)), vcpu_mmap_size_(vcpu_mmap_size), caps_(caps), supported_cpuid_(std::move(cpuid)) {}

  UniqueFd kvm_;
  size_t vcpu_mmap_size_;
  KvmCapabilities caps_;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
};

}  // namespace hostvisor::kvm
