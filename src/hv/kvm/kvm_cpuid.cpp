#include "hv/kvm/kvm_cpuid.h"

namespace hostvisor::kvm {
namespace {

constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafTopology = 0xb;
constexpr uint32_t kLeafTopologyV2 = 0x1f;
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;

}  // namespace

std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, uint32_t apic_id) {
  std::vector<kvm_cpuid_entry2> out = supported;
  for (auto& entry : out) {
    switch (entry.function) {
      case kLeafFeatures:
        // The initial APIC id is 8 bits wide; x2APIC ids above 255 live only in 0xB/0x1F.
        entry.ebx = (entry.ebx & 0x00ffffffu) | ((apic_id & 0xffu) << 24);
        entry.ecx |= kLeaf1EcxHypervisor;
        break;
      case kLeafTopology:
      case kLeafTopologyV2: entry.edx = apic_id; break;
      default: break;
    }
  }
  return out;
}

}  // namespace hostvisor::kvm
