#include "arch/x86_64/boot_cpu.h"

#include <array>

#include "arch/x86_64/layout.h"

namespace hostvisor::arch {

namespace {

constexpr uint8_t kTypeCodeExecReadAccessed = 0xb;
constexpr uint8_t kTypeDataReadWriteAccessed = 0x3;
constexpr uint8_t kTypeTssBusy = 0xb;  // 32-bit TSS in legacy mode, 64-bit TSS in long mode
constexpr uint32_t kTssLimit = 0x67;   // minimum size of a TSS

Segment flat_segment(uint16_t selector, uint8_t type) {
  Segment s;
  s.base = 0;
  s.limit = 0xffffffff;  // byte-granular view of a 4 GiB limit, as the descriptor cache holds it
  s.selector = selector;
  s.type = type;
  s.present = true;
  s.s = true;
  s.g = true;
  s.db = true;
  return s;
}

Segment code32_segment() { return flat_segment(kBootCode32Selector, kTypeCodeExecReadAccessed); }

Segment code64_segment() {
  Segment s = flat_segment(kBootCode64Selector, kTypeCodeExecReadAccessed);
  s.l = true;
  s.db = false;  // L=1 requires D=0
  return s;
}

Segment data_segment() { return flat_segment(kBootDataSelector, kTypeDataReadWriteAccessed); }

Segment tss_segment() {
  Segment s;
  s.selector = kBootTssSelector;
  s.base = 0;
  s.limit = kTssLimit;
  s.type = kTypeTssBusy;
  s.s = false;
  s.present = true;
  return s;
}

// The 8-byte descriptor encoding of a segment (Intel SDM vol. 3, 3.4.5).
uint64_t encode_descriptor(const Segment& s) {
  const uint32_t limit = s.g ? s.limit >> 12 : s.limit;
  uint64_t d = 0;
  d |= limit & 0xffffull;
  d |= (s.base & 0xffffffull) << 16;
  d |= static_cast<uint64_t>(s.type & 0xf) << 40;
  d |= static_cast<uint64_t>(s.s) << 44;
  d |= static_cast<uint64_t>(s.dpl & 0x3) << 45;
  d |= static_cast<uint64_t>(s.present) << 47;
  d |= static_cast<uint64_t>((limit >> 16) & 0xf) << 48;
  d |= static_cast<uint64_t>(s.avl) << 52;
  d |= static_cast<uint64_t>(s.l) << 53;
  d |= static_cast<uint64_t>(s.db) << 54;
  d |= static_cast<uint64_t>(s.g) << 55;
  d |= ((s.base >> 24) & 0xffull) << 56;
  return d;
}

SystemRegisters common_system_registers() {
  SystemRegisters s = reset_system_registers();
  s.ds = s.es = s.fs = s.gs = s.ss = data_segment();
  s.tr = tss_segment();
  s.ldt = Segment{};
  s.ldt.s = false;
  s.ldt.type = 0x2;
  s.ldt.present = false;
  s.ldt.unusable = true;
  s.ldt.limit = 0;
  s.gdt = {kBootGdtAddress, kBootGdtLimit};
  // No IDT: an exception before the kernel installs its own is a clean
  // triple fault (a shutdown exit) instead of a jump through garbage.
  s.idt = {0, 0};
  s.cr2 = 0;
  return s;
}

}  // namespace

Result<void> write_boot_gdt(GuestMemory& memory) {
  const std::array<uint64_t, 6> gdt = {
      0,
      encode_descriptor(code32_segment()),
      encode_descriptor(code64_segment()),
      encode_descriptor(data_segment()),
      encode_descriptor(tss_segment()),
      0,  // upper half of the 16-byte long-mode TSS descriptor: base[63:32] = 0
  };
  static_assert(sizeof(gdt) == kBootGdtLimit + 1);
  HV_TRY(memory.fill(GuestAddress(kBootGdtAddress), 0, kPageSize));
  return memory.write_obj(GuestAddress(kBootGdtAddress), gdt);
}

Result<void> write_identity_page_tables(GuestMemory& memory) {
  HV_TRY(memory.fill(GuestAddress(kBootPml4Address), 0, kPageSize));
  HV_TRY(memory.fill(GuestAddress(kBootPdptAddress), 0, kPageSize));
  HV_TRY(memory.write_obj<uint64_t>(GuestAddress(kBootPml4Address), kBootPdptAddress | kPtePresent | kPteWritable));
  for (uint64_t pd = 0; pd < kBootPdCount; ++pd) {
    const uint64_t pd_address = kBootPdAddress + pd * kPageSize;
    HV_TRY(
        memory.write_obj<uint64_t>(GuestAddress(kBootPdptAddress + pd * 8), pd_address | kPtePresent | kPteWritable));
    std::array<uint64_t, 512> entries;
    for (uint64_t i = 0; i < entries.size(); ++i)
      entries[i] = (pd * kGiB + i * 2 * kMiB) | kPtePresent | kPteWritable | kPteLargePage;
    HV_TRY(memory.write_obj(GuestAddress(pd_address), entries));
  }
  return {};
}

BootCpuState long_mode_boot_state(uint64_t entry) {
  BootCpuState state;
  state.sregs = common_system_registers();
  state.sregs.cs = code64_segment();
  state.sregs.cr0 = x86::kCr0Pe | x86::kCr0Et | x86::kCr0Ne | x86::kCr0Pg;
  state.sregs.cr3 = kBootPml4Address;
  state.sregs.cr4 = x86::kCr4Pae;
  state.sregs.efer = x86::kEferLme | x86::kEferLma;
  state.regs.rip = entry;
  state.regs.rflags = 0x2;
  return state;
}

BootCpuState protected_mode_boot_state(uint32_t entry) {
  BootCpuState state;
  state.sregs = common_system_registers();
  state.sregs.cs = code32_segment();
  // PVH: "PE set, all other writable bits clear"; multiboot leaves the rest
  // undefined. ET is read-only (always 1) on every CPU since the 486.
  state.sregs.cr0 = x86::kCr0Pe | x86::kCr0Et;
  state.sregs.cr3 = 0;
  state.sregs.cr4 = 0;
  state.sregs.efer = 0;
  state.regs.rip = entry;
  state.regs.rflags = 0x2;
  return state;
}

}  // namespace hostvisor::arch
