#include "hv/kvm/kvm_cpuid.h"

#include <gtest/gtest.h>

namespace hostvisor::kvm {
namespace {

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index, uint32_t ebx, uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.ebx = ebx;
  e.edx = edx;
  return e;
}

TEST(VcpuCpuid, FillsTheApicIdEverywhereItAppears) {
  std::vector<kvm_cpuid_entry2> supported = {
      leaf(0x1, 0, 0x01020800, 0x0f8bfbff),  leaf(0xb, 0, 0x1, 0),       leaf(0xb, 1, 0x2, 0), leaf(0x1f, 0, 0x1, 0),
      leaf(0x40000000, 0, 0x4b4d564b, 0x4d), leaf(0x4, 0, 0x02c0003f, 0)};
  auto out = vcpu_cpuid(supported, 3);
  ASSERT_EQ(out.size(), supported.size());
  EXPECT_EQ(out[0].ebx, 0x03020800u);  // APIC id in [31:24], the rest kept
  EXPECT_EQ(out[0].edx, supported[0].edx);
  EXPECT_NE(out[0].ecx & (1u << 31), 0u);  // hypervisor present
  EXPECT_EQ(out[1].edx, 3u);
  EXPECT_EQ(out[2].edx, 3u);
  EXPECT_EQ(out[3].edx, 3u);
  EXPECT_EQ(out[1].ebx, supported[1].ebx);
  EXPECT_EQ(out[4].ebx, supported[4].ebx);  // hypervisor leaf untouched
  EXPECT_EQ(out[4].edx, supported[4].edx);
  EXPECT_EQ(out[5].ebx, supported[5].ebx);
}

TEST(VcpuCpuid, WideX2ApicIdsOnlyInTopologyLeaves) {
  auto out = vcpu_cpuid({leaf(0x1, 0, 0x00ffffff, 0), leaf(0xb, 0, 0, 0)}, 0x1234);
  EXPECT_EQ(out[0].ebx, 0x34ffffffu);
  EXPECT_EQ(out[1].edx, 0x1234u);
}

}  // namespace
}  // namespace hostvisor::kvm
