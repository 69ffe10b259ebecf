// The second-level soft TLB (second_level_tlb.h): the first level's misses
// are filled from it as a CPU's STLB fills its L1 TLBs, so a page-table
// change is seen only after the invalidation x86 asks for, and it never
// allows what the walk would refuse or skips a bit the walk would set.
#include <gtest/gtest.h>

#include "hv/emu/mmu.h"
#include "hv/emu/testing/test_machine.h"

namespace hostvisor::emu {
namespace {

using testing::TestMachine;

constexpr uint64_t kPage = TestMachine::kData + 0x3000;
constexpr uint64_t kOther = TestMachine::kData + 0x5000;
constexpr uint64_t kPresent = 1, kWritable = 2, kUser = 4, kDirty = 1u << 6, kGlobal = 1u << 8;

class SecondLevelTlbTest : public ::testing::Test {
 protected:
  Cpu& cpu() { return m_.cpu(); }
  // Writes the PTE of `linear` with no invalidation (set_pte flushes).
  void write_pte(uint64_t linear, uint64_t value) {
    m_.write_value<uint64_t>(TestMachine::kPt + (linear >> 12) * 8, value);
  }
  // The guest-physical page the first level now maps `linear` to, after
  // its own entry was dropped (as a conflicting page would evict it).
  uint64_t refill(uint64_t linear, Access access = Access::kRead, bool user = false) {
    cpu().tlb.e[user][static_cast<int>(access)][(linear >> 12) & (kTlbSize - 1)].tag = kTlbInvalid;
    return tlb_fill(cpu(), linear, access, user).phys;
  }

  TestMachine m_;
};

TEST_F(SecondLevelTlbTest, AChangedEntryIsSeenAfterInvlpgOrACr3Load) {
  m_.set_pte(kPage, kPage | kPresent | kWritable);
  EXPECT_EQ(refill(kPage), kPage);
  write_pte(kPage, kOther | kPresent | kWritable);
  EXPECT_EQ(refill(kPage), kPage) << "cached until invalidated, as a CPU's TLB";
  tlb_invlpg(cpu(), kPage);
  EXPECT_EQ(refill(kPage), kOther);
  write_pte(kPage, kPage | kPresent | kWritable);
  tlb_flush_non_global(cpu());
  EXPECT_EQ(refill(kPage), kPage);
}

TEST_F(SecondLevelTlbTest, AGlobalEntryOutlivesACr3LoadButNotAFullFlush) {
  cpu().cr4 |= x86::kCr4Pge;
  m_.set_pte(kPage, kPage | kPresent | kWritable | kGlobal);
  EXPECT_EQ(refill(kPage), kPage);
  write_pte(kPage, kOther | kPresent | kWritable | kGlobal);
  tlb_flush_non_global(cpu());
  EXPECT_EQ(refill(kPage), kPage);
  tlb_flush(cpu());
  EXPECT_EQ(refill(kPage), kOther);
}

TEST_F(SecondLevelTlbTest, AWriteAfterAReadSetsTheDirtyBit) {
  m_.set_pte(kPage, kPage | kPresent | kWritable);
  refill(kPage);
  EXPECT_EQ(m_.pte(kPage) & kDirty, 0u);
  refill(kPage, Access::kWrite);
  EXPECT_NE(m_.pte(kPage) & kDirty, 0u) << "the write went to the walk";
}

TEST_F(SecondLevelTlbTest, NeverAllowsWhatTheWalkRefuses) {
  m_.set_pte(kPage, kPage | kPresent | kDirty);  // supervisor, read-only
  refill(kPage);
  EXPECT_THROW(refill(kPage, Access::kRead, true), GuestFault);
  EXPECT_THROW(refill(kPage, Access::kWrite), GuestFault);  // CR0.WP
  cpu().cr0 &= ~x86::kCr0Wp;
  tlb_flush(cpu());
  refill(kPage);
  EXPECT_EQ(refill(kPage, Access::kWrite), kPage) << "without CR0.WP the supervisor writes";
  // Made user and writable: the next walk after the refusal sees it.
  m_.set_pte(kPage, kPage | kPresent | kWritable | kUser | kDirty);
  EXPECT_EQ(refill(kPage, Access::kRead, true), kPage);
}

TEST_F(SecondLevelTlbTest, ACopiedTlbHasNoEntriesAndAnAssignedOneLosesItsOwn) {
  m_.set_pte(kPage, kPage | kPresent | kWritable);
  refill(kPage);
  Tlb copy = cpu().tlb;
  EXPECT_EQ(copy.second.find(kPage), nullptr);
  EXPECT_NE(cpu().tlb.second.find(kPage), nullptr);
  cpu().tlb = Tlb{};
  EXPECT_EQ(cpu().tlb.second.find(kPage), nullptr);
}

}  // namespace
}  // namespace hostvisor::emu
