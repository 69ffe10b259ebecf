#include "arch/x86_64/boot_cpu.h"

#include <gtest/gtest.h>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/test_images.h"

namespace hostvisor::arch {
namespace {

using testing::make_test_vm;

TEST(BootCpu, GdtHoldsFlatDescriptorsAtTheBootSelectors) {
  auto vm = make_test_vm(16 * kMiB);
  ASSERT_TRUE(write_boot_gdt(vm.memory).ok());
  auto gdt = [&](uint16_t selector) { return *vm.memory.read_obj<uint64_t>(GuestAddress(kBootGdtAddress + selector)); };
  EXPECT_EQ(gdt(0), 0u);
  EXPECT_EQ(gdt(kBootCode32Selector), 0x00cf9b000000ffffull);  // G, D/B, P, code exec/read
  EXPECT_EQ(gdt(kBootCode64Selector), 0x00af9b000000ffffull);  // G, L, P, code exec/read
  EXPECT_EQ(gdt(kBootDataSelector), 0x00cf93000000ffffull);    // G, D/B, P, data read/write
  EXPECT_EQ(gdt(kBootTssSelector), 0x00008b0000000067ull);     // busy TSS, limit 0x67
  EXPECT_EQ(gdt(kBootTssSelector + 8), 0u);
}

// Walks the 4-level tables the way the MMU does, for 2 MiB pages.
std::optional<uint64_t> translate(const GuestMemory& m, uint64_t cr3, uint64_t va) {
  const uint64_t pml4e = *m.read_obj<uint64_t>(GuestAddress(cr3 + ((va >> 39) & 511) * 8));
  if (!(pml4e & kPtePresent)) return std::nullopt;
  const uint64_t pdpte = *m.read_obj<uint64_t>(GuestAddress((pml4e & ~0xfffull) + ((va >> 30) & 511) * 8));
  if (!(pdpte & kPtePresent)) return std::nullopt;
  const uint64_t pde = *m.read_obj<uint64_t>(GuestAddress((pdpte & ~0xfffull) + ((va >> 21) & 511) * 8));
  if (!(pde & kPtePresent) || !(pde & kPteLargePage)) return std::nullopt;
  return (pde & ~0x1fffffull) + (va & 0x1fffff);
}

TEST(BootCpu, PageTablesIdentityMapTheFirst4GiB) {
  auto vm = make_test_vm(16 * kMiB);
  ASSERT_TRUE(write_identity_page_tables(vm.memory).ok());
  for (uint64_t va : {0ull, 0x7000ull, 0x1234567ull, 0x40000000ull, 0xb0000000ull, 0xfee00000ull, 0xffffffffull})
    EXPECT_EQ(translate(vm.memory, kBootPml4Address, va), va) << std::hex << va;
  EXPECT_EQ(translate(vm.memory, kBootPml4Address, 0x100000000ull), std::nullopt);
  const uint64_t pde = *vm.memory.read_obj<uint64_t>(GuestAddress(kBootPdAddress));
  EXPECT_EQ(pde, kPtePresent | kPteWritable | kPteLargePage);
}

TEST(BootCpu, LongModeState) {
  BootCpuState s = long_mode_boot_state(0x1000200);
  EXPECT_EQ(s.regs.rip, 0x1000200u);
  EXPECT_EQ(s.regs.rflags & x86::kRflagsIf, 0u);
  EXPECT_EQ(s.sregs.cr0 & (x86::kCr0Pe | x86::kCr0Pg), x86::kCr0Pe | x86::kCr0Pg);
  EXPECT_EQ(s.sregs.cr0 & 0x60000000u, 0u);  // caches on
  EXPECT_TRUE(s.sregs.cr4 & x86::kCr4Pae);
  EXPECT_EQ(s.sregs.efer, x86::kEferLme | x86::kEferLma);
  EXPECT_EQ(s.sregs.cr3, kBootPml4Address);
  EXPECT_EQ(s.sregs.cs.selector, kBootCode64Selector);
  EXPECT_TRUE(s.sregs.cs.l);
  EXPECT_FALSE(s.sregs.cs.db);
  for (const Segment* seg : {&s.sregs.ds, &s.sregs.es, &s.sregs.ss, &s.sregs.fs, &s.sregs.gs}) {
    EXPECT_EQ(seg->selector, kBootDataSelector);
    EXPECT_EQ(seg->base, 0u);
    EXPECT_EQ(seg->limit, 0xffffffffu);
  }
  EXPECT_EQ(s.sregs.gdt.base, kBootGdtAddress);
  EXPECT_EQ(s.sregs.gdt.limit, kBootGdtLimit);
}

TEST(BootCpu, ProtectedModeState) {
  BootCpuState s = protected_mode_boot_state(0x100040);
  EXPECT_EQ(s.regs.rip, 0x100040u);
  EXPECT_EQ(s.sregs.cr0, x86::kCr0Pe | x86::kCr0Et);  // PVH: other writable bits clear
  EXPECT_EQ(s.sregs.cr4, 0u);
  EXPECT_EQ(s.sregs.efer, 0u);
  EXPECT_EQ(s.sregs.cs.selector, kBootCode32Selector);
  EXPECT_TRUE(s.sregs.cs.db);
  EXPECT_FALSE(s.sregs.cs.l);
  EXPECT_EQ(s.sregs.cs.type, 0xb);
  EXPECT_EQ(s.sregs.ss.type, 0x3);
  EXPECT_TRUE(s.sregs.ss.db);
  EXPECT_EQ(s.sregs.tr.limit, 0x67u);
  EXPECT_EQ(s.regs.rflags, 0x2u);
}

}  // namespace
}  // namespace hostvisor::arch
