#include "hv/emu/cpuid.h"

#include <cstring>

#include "hv/emu/platform/platform_clock.h"

namespace hostvisor::emu {
namespace {

constexpr uint32_t kMaxBasicLeaf = 0x16;
constexpr uint32_t kMaxExtendedLeaf = 0x80000008;

// Leaf 1 EDX: FPU DE PSE TSC MSR PAE CX8 APIC PGE CMOV PAT PSE36 CLFSH MMX FXSR SSE SSE2.
constexpr uint32_t kLeaf1Edx = (1u << 0) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) |
                               (1u << 9) | (1u << 13) | (1u << 15) | (1u << 16) | (1u << 17) | (1u << 19) | (1u << 23) |
                               (1u << 24) | (1u << 25) | (1u << 26);
// Leaf 1 ECX: POPCNT, TSC-deadline, hypervisor present.
constexpr uint32_t kLeaf1Ecx = (1u << 23) | (1u << 24) | (1u << 31);
// Leaf 0x80000001 EDX: SYSCALL, NX, 1 GiB pages, RDTSCP, LM. ECX: LAHF/SAHF in 64-bit mode.
constexpr uint32_t kExt1Edx = (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29);
constexpr uint32_t kExt1Ecx = 1u << 0;

uint32_t chars(const char* s) {
  uint32_t v;
  std::memcpy(&v, s, 4);
  return v;
}

}  // namespace

CpuidResult cpuid(const Cpu& cpu, uint32_t leaf, uint32_t subleaf) {
  CpuidResult r;
  if (leaf > kMaxBasicLeaf && leaf < 0x80000000) leaf = kMaxBasicLeaf;  // as Intel CPUs answer out-of-range leaves
  if (leaf > kMaxExtendedLeaf) leaf = kMaxBasicLeaf;
  switch (leaf) {
    case 0:
      r.eax = kMaxBasicLeaf;
      r.ebx = chars("Genu");
      r.edx = chars("ineI");
      r.ecx = chars("ntel");
      break;
    case 1:
      r.eax = 0x000506e3;                                    // family 6, model 0x5e, stepping 3
      r.ebx = (cpu.apic_id << 24) | (1u << 16) | (8u << 8);  // APIC id, 1 logical CPU, 64-byte CLFLUSH
      r.ecx = kLeaf1Ecx;
      r.edx = kLeaf1Edx;
      break;
    case 6: r.eax = 1u << 2; break;  // ARAT: the APIC timer runs in deep C-states
    case 7:
      if (subleaf == 0) r.edx = 1u << 29;  // IA32_ARCH_CAPABILITIES
      break;
    case 0x15:
      r.eax = kTscCrystalRatioDenominator;
      r.ebx = kTscCrystalRatioNumerator;
      r.ecx = static_cast<uint32_t>(kCrystalHz);
      break;
    case 0x16:
      r.eax = static_cast<uint32_t>(kTscFrequencyHz / 1'000'000);
      r.ebx = r.eax;
      r.ecx = static_cast<uint32_t>(kCrystalHz / 1'000'000);
      break;
    case 0x80000000: r.eax = kMaxExtendedLeaf; break;
    case 0x80000001:
      r.ecx = kExt1Ecx;
      r.edx = kExt1Edx;
      break;
    case 0x80000002:
    case 0x80000003:
    case 0x80000004: {
      static const char kBrand[49] = "hostvisor software x86-64 CPU                   ";
      const char* p = kBrand + (leaf - 0x80000002) * 16;
      r.eax = chars(p);
      r.ebx = chars(p + 4);
      r.ecx = chars(p + 8);
      r.edx = chars(p + 12);
      break;
    }
    case 0x80000007: r.edx = 1u << 8; break;  // invariant TSC
    case 0x80000008: r.eax = 0x3028; break;   // 40 physical, 48 linear address bits
    default: break;
  }
  return r;
}

}  // namespace hostvisor::emu
