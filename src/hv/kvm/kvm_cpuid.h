// The CPUID a KVM vCPU shows its guest: what KVM supports, with the
// per-vCPU fields (APIC ids) filled in.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace hostvisor::kvm {

// Returns `supported` (from KVM_GET_SUPPORTED_CPUID) for the vCPU with APIC
// id `apic_id`: leaf 1 EBX[31:24] is its initial APIC id, leaves 0xB and
// 0x1F report its x2APIC id in EDX, and leaf 1 sets the "running under a
// hypervisor" bit. Hypervisor leaves (0x40000000 and up) stay as KVM gave.
std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, uint32_t apic_id);

}  // namespace hostvisor::kvm
