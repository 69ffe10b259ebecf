// The translator's TLB mirror (tlb_mirror.h) holds only what the TLB maps
// as RAM, with addends that give the TLB's host addresses, through every
// fill and flush; a copied Cpu never writes the original's.
#include <gtest/gtest.h>

#include "hv/emu/mmu.h"
#include "hv/emu/testing/test_machine.h"

namespace hostvisor::emu {
namespace {

using testing::TestMachine;

constexpr uint64_t kPage = TestMachine::kData + 0x3000;

unsigned index_of(uint64_t linear) { return (linear >> 12) & (kTlbSize - 1); }

// The mirror's entry for `linear`, as translated code reads it: the host
// address, or nullptr on a miss.
const uint8_t* mirrored(Cpu& cpu, uint64_t linear, bool write) {
  const TlbMirror* m = cpu.tlb.mirror.get();
  const unsigned i = index_of(linear);
  if (m->tag[0][write][i] != linear >> 12) return nullptr;
  return reinterpret_cast<const uint8_t*>(m->addend[0][write][i] + linear);
}

TEST(TlbMirror, HoldsWhatTheTlbMapsAsRamThroughFillsAndFlushes) {
  TestMachine m;
  Cpu& cpu = m.cpu();
  cpu.cr4 |= x86::kCr4Pge;
  ASSERT_NE(cpu.tlb.mirror.attach(), nullptr);
  m.set_pte(kPage, kPage | 3 | (1u << 8));  // global
  const uint64_t local = kPage + 0x1000;
  const uint64_t linear = kPage + 0x123;
  EXPECT_EQ(mirrored(cpu, linear, false), nullptr);

  const TlbEntry& read = tlb_fill(cpu, linear, Access::kRead, false);
  ASSERT_NE(read.host, nullptr);
  EXPECT_EQ(mirrored(cpu, linear, false), read.host + 0x123);
  EXPECT_EQ(mirrored(cpu, linear, true), nullptr);  // a read fill makes no write entry
  tlb_fill(cpu, linear, Access::kWrite, false);
  EXPECT_EQ(mirrored(cpu, linear, true), read.host + 0x123);
  tlb_fill(cpu, local, Access::kRead, false);
  ASSERT_NE(mirrored(cpu, local, false), nullptr);

  // A CR3 load keeps the global page only; a page becoming code drops
  // every write entry; INVLPG drops the page.
  tlb_flush_non_global(cpu);
  EXPECT_NE(mirrored(cpu, linear, false), nullptr);
  EXPECT_EQ(mirrored(cpu, local, false), nullptr);
  tlb_flush_writes(cpu);
  EXPECT_EQ(mirrored(cpu, linear, true), nullptr);
  EXPECT_NE(mirrored(cpu, linear, false), nullptr);
  tlb_invlpg(cpu, linear);
  EXPECT_EQ(mirrored(cpu, linear, false), nullptr);
  tlb_fill(cpu, linear, Access::kRead, false);
  tlb_flush(cpu);
  EXPECT_EQ(mirrored(cpu, linear, false), nullptr);

  // Not RAM (a physical address past the end of it): the TLB has the
  // entry (the interpreter's MMIO path), the mirror does not.
  m.set_pte(kPage, (1ull << 30) | 3);
  const TlbEntry& mmio = tlb_fill(cpu, linear, Access::kRead, false);
  EXPECT_EQ(mmio.tag, linear >> 12);
  EXPECT_EQ(mmio.host, nullptr);
  EXPECT_EQ(mirrored(cpu, linear, false), nullptr);
}

TEST(TlbMirror, ACopyHasNoneOfItsOwnAndAnAssignedOneEmptiesItsOwn) {
  TestMachine m;
  Cpu& cpu = m.cpu();
  TlbMirror* own = cpu.tlb.mirror.attach();
  tlb_fill(cpu, kPage, Access::kRead, false);
  ASSERT_NE(mirrored(cpu, kPage, false), nullptr);

  Tlb copy = cpu.tlb;
  EXPECT_EQ(copy.mirror.get(), nullptr);
  EXPECT_EQ(mirrored(cpu, kPage, false), cpu.tlb.e[0][0][index_of(kPage)].host);

  cpu.tlb = Tlb{};
  EXPECT_EQ(cpu.tlb.mirror.get(), own);
  EXPECT_EQ(mirrored(cpu, kPage, false), nullptr);
}

TEST(TlbMirror, MapsInTheLowTwoGigabytesOrWhereAsked) {
  TlbMirror* low = map_tlb_mirror();
  TlbMirror* anywhere = map_tlb_mirror(false);
  EXPECT_LT(reinterpret_cast<uintptr_t>(low + 1), 0x80000000ull);
  for (const TlbMirror* m : {low, anywhere})
    for (unsigned i = 0; i < kTlbSize; ++i) EXPECT_EQ(m->tag[1][1][i], kTlbInvalid);
  unmap_tlb_mirror(low);
  unmap_tlb_mirror(anywhere);
}

}  // namespace
}  // namespace hostvisor::emu
