#include "hv/emu/msr.h"

#include <chrono>

#include "hv/emu/mmu.h"
#include "hv/emu/platform/local_apic.h"
#include "hv/emu/platform/platform_clock.h"
#include "hv/emu/segments.h"

namespace hostvisor::emu {
namespace {

constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrFeatureControl = 0x3a;
constexpr uint32_t kMsrSpecCtrl = 0x48;
constexpr uint32_t kMsrPredCmd = 0x49;
constexpr uint32_t kMsrBiosSignId = 0x8b;
constexpr uint32_t kMsrPlatformId = 0x17;  // read by firmware's microcode loaders (OVMF); 0, as KVM gives
constexpr uint32_t kMsrArchCapabilities = 0x10a;
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMcgCap = 0x179;
constexpr uint32_t kMsrMcgStatus = 0x17a;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrPat = 0x277;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrEfer = 0xc0000080;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSfmask = 0xc0000084;
constexpr uint32_t kMsrFsBase = 0xc0000100;
constexpr uint32_t kMsrGsBase = 0xc0000101;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;
constexpr uint32_t kMsrTscAux = 0xc0000103;

// TSC before the guest's offset: the platform clock, or host time for a bare CPU.
uint64_t base_tsc(const Cpu& cpu) {
  if (cpu.clock) return tsc_at_ns(cpu.clock->now_ns());
  static const auto origin = std::chrono::steady_clock::now();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - origin);
  return tsc_at_ns(static_cast<uint64_t>(ns.count()));
}

bool valid_pat(uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    const uint64_t t = (v >> (i * 8)) & 0xff;
    if (t == 2 || t == 3 || t > 7) return false;
  }
  return true;
}

}  // namespace

uint64_t guest_tsc(const Cpu& cpu) {
  if (cpu.lapic) return cpu.lapic->guest_tsc();
  return base_tsc(cpu) + static_cast<uint64_t>(cpu.msr.tsc_offset);
}

uint64_t cpu_cr8(const Cpu& cpu) { return cpu.lapic ? cpu.lapic->cr8() : cpu.cr8; }

void set_cpu_cr8(Cpu& cpu, uint64_t value) {
  cpu.cr8 = value & 0xf;
  if (cpu.lapic) cpu.lapic->set_cr8(static_cast<uint8_t>(value & 0xf));
}

std::optional<uint64_t> read_msr(Cpu& cpu, uint32_t index) {
  if (cpu.lapic && LocalApic::is_apic_msr(index)) {
    auto r = cpu.lapic->msr_read(index);
    if (!r) return std::nullopt;
    return *r;
  }
  switch (index) {
    case kMsrTsc: return guest_tsc(cpu);
    case LocalApic::kMsrApicBase: return cpu.apic_base;
    case kMsrFeatureControl: return 1;  // locked, VMX off
    case kMsrSpecCtrl: return cpu.msr.spec_ctrl;
    case kMsrBiosSignId: return 0;
    case kMsrPlatformId: return 0;
    case kMsrArchCapabilities: return kArchCapabilities;
    case kMsrSysenterCs: return cpu.msr.sysenter_cs;
    case kMsrSysenterEsp: return cpu.msr.sysenter_esp;
    case kMsrSysenterEip: return cpu.msr.sysenter_eip;
    case kMsrMcgCap:
    case kMsrMcgStatus: return 0;
    case kMsrMiscEnable: return cpu.msr.misc_enable;
    case kMsrPat: return cpu.msr.pat;
    case kMsrMtrrDefType: return cpu.msr.mtrr_def_type;
    case kMsrEfer: return cpu.efer;
    case kMsrStar: return cpu.msr.star;
    case kMsrLstar: return cpu.msr.lstar;
    case kMsrCstar: return cpu.msr.cstar;
    case kMsrSfmask: return cpu.msr.sfmask;
    case kMsrFsBase: return cpu.seg[kFs].base;
    case kMsrGsBase: return cpu.seg[kGs].base;
    case kMsrKernelGsBase: return cpu.msr.kernel_gs_base;
    case kMsrTscAux: return cpu.msr.tsc_aux;
    default: return std::nullopt;
  }
}

bool write_msr(Cpu& cpu, uint32_t index, uint64_t v) {
  if (cpu.lapic && LocalApic::is_apic_msr(index)) {
    if (!cpu.lapic->msr_write(index, v).ok()) return false;
    if (index == LocalApic::kMsrApicBase) cpu.apic_base = v;
    return true;
  }
  switch (index) {
    case kMsrTsc:
      cpu.msr.tsc_offset = static_cast<int64_t>(v - base_tsc(cpu));
      if (cpu.lapic) cpu.lapic->set_tsc_offset(static_cast<uint64_t>(cpu.msr.tsc_offset));
      return true;
    case LocalApic::kMsrApicBase: cpu.apic_base = v; return true;
    case kMsrSpecCtrl:
      if (v & ~0x7ull) return false;
      cpu.msr.spec_ctrl = v;
      return true;
    case kMsrPredCmd: return (v & ~1ull) == 0;
    case kMsrBiosSignId: return true;
    case kMsrSysenterCs: cpu.msr.sysenter_cs = v & 0xffff; return true;
    case kMsrSysenterEsp:
      if (!is_canonical(v)) return false;
      cpu.msr.sysenter_esp = v;
      return true;
    case kMsrSysenterEip:
      if (!is_canonical(v)) return false;
      cpu.msr.sysenter_eip = v;
      return true;
    case kMsrMcgStatus: return v == 0;
    case kMsrMiscEnable: cpu.msr.misc_enable = v; return true;
    case kMsrPat:
      if (!valid_pat(v)) return false;
      cpu.msr.pat = v;
      return true;
    case kMsrMtrrDefType:
      if (v & ~0xcffull) return false;
      cpu.msr.mtrr_def_type = v;
      return true;
    case kMsrEfer: {
      const uint64_t allowed = x86::kEferSce | x86::kEferLme | x86::kEferNxe;
      if (v & ~(allowed | x86::kEferLma)) return false;
      // LME cannot change while paging is on; LMA is read-only.
      if ((cpu.cr0 & x86::kCr0Pg) && ((v ^ cpu.efer) & x86::kEferLme)) return false;
      const uint64_t old = cpu.efer;
      cpu.efer = (v & allowed) | (cpu.efer & x86::kEferLma);
      if ((old ^ cpu.efer) & x86::kEferNxe) tlb_flush(cpu);
      update_mode(cpu);
      return true;
    }
    case kMsrStar: cpu.msr.star = v; return true;
    case kMsrLstar:
      if (!is_canonical(v)) return false;
      cpu.msr.lstar = v;
      return true;
    case kMsrCstar:
      if (!is_canonical(v)) return false;
      cpu.msr.cstar = v;
      return true;
    case kMsrSfmask: cpu.msr.sfmask = v & 0xffffffff; return true;
    case kMsrFsBase:
      if (!is_canonical(v)) return false;
      cpu.seg[kFs].base = v;
      return true;
    case kMsrGsBase:
      if (!is_canonical(v)) return false;
      cpu.seg[kGs].base = v;
      return true;
    case kMsrKernelGsBase:
      if (!is_canonical(v)) return false;
      cpu.msr.kernel_gs_base = v;
      return true;
    case kMsrTscAux: cpu.msr.tsc_aux = v & 0xffffffff; return true;
    default: return false;
  }
}

}  // namespace hostvisor::emu
