// Targeted tests of the software CPU: execution, exceptions through the IDT
// (error codes, CR2, IST, double and triple fault), paging (#PF error codes,
// A/D bits, NX, CR0.WP), self-modifying code, MMIO and port I/O exits with
// restart, privilege changes, and the real -> protected -> long mode switch.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "devices/bus/bus.h"
#include "devices/bus/bus_device.h"
#include "hv/emu/decoder.h"
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/x87_state.h"
#include "hv/emu/flags.h"
#include "hv/emu/mmu.h"
#include "hv/emu/segments.h"
#include "hv/emu/testing/snippet.h"
#include "hv/emu/testing/test_machine.h"

namespace hostvisor::emu {
namespace {

using testing::TestMachine;
using Stop = Interpreter::Stop;

HV_EMU_SNIPPET(sum_loop, R"(
  xor eax, eax
  mov ecx, 100
1: add rax, rcx
  dec ecx
  jnz 1b
  hlt
)")

TEST(EmuBasic, LoopComputesSum) {
  TestMachine m;
  m.load_code(sum_loop());
  auto out = m.run();
  ASSERT_EQ(out.stop, Stop::kHalt) << out.detail;
  EXPECT_EQ(m.cpu().gpr[0], 5050u);
  EXPECT_EQ(m.cpu().rip, TestMachine::kCode + sum_loop().size());
  EXPECT_EQ(m.cpu().gpr[1], 0u);
}

HV_EMU_SNIPPET(divide_by_zero, R"(
  mov eax, 7
  xor ecx, ecx
  div ecx
  hlt
)")

// The frame an exception pushed on the kernel stack (no privilege change).
struct Frame {
  uint64_t error, rip, cs, rflags, rsp, ss;
};
Frame frame(TestMachine& m, bool has_error) {
  uint64_t sp = m.cpu().gpr[4];
  Frame f{};
  if (has_error) {
    f.error = m.read<uint64_t>(sp);
    sp += 8;
  }
  f.rip = m.read<uint64_t>(sp);
  f.cs = m.read<uint64_t>(sp + 8);
  f.rflags = m.read<uint64_t>(sp + 16);
  f.rsp = m.read<uint64_t>(sp + 24);
  f.ss = m.read<uint64_t>(sp + 32);
  return f;
}

TEST(EmuExceptions, DivideErrorPointsAtTheDiv) {
  TestMachine m;
  m.load_code(divide_by_zero());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kDe);
  Frame f = frame(m, false);
  EXPECT_EQ(f.rip, TestMachine::kCode + 7);  // mov eax (5) + xor (2)
  EXPECT_EQ(f.cs, TestMachine::kCode64);
  EXPECT_EQ(f.rsp, TestMachine::kStackTop);
  EXPECT_EQ(m.cpu().gpr[0], 7u);  // the faulting DIV changed nothing
  EXPECT_EQ(m.cpu().gpr[4], TestMachine::kStackTop - 40);
}

HV_EMU_SNIPPET(ud2_code, "ud2")
HV_EMU_SNIPPET(noncanonical_read, R"(
  mov rax, 0x0000800000000000
  mov rbx, [rax]
  hlt
)")
HV_EMU_SNIPPET(bad_msr, R"(
  mov ecx, 0x12345
  rdmsr
  hlt
)")

TEST(EmuExceptions, InvalidOpcodeAndGeneralProtection) {
  {
    TestMachine m;
    m.load_code(ud2_code());
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    EXPECT_EQ(m.vector_taken(), kUd);
    EXPECT_EQ(frame(m, false).rip, TestMachine::kCode);
  }
  {
    TestMachine m;
    m.load_code(noncanonical_read());
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    EXPECT_EQ(m.vector_taken(), kGp);
    Frame f = frame(m, true);
    EXPECT_EQ(f.error, 0u);
    EXPECT_EQ(f.rip, TestMachine::kCode + 10);
  }
  {
    TestMachine m;
    m.load_code(bad_msr());
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    EXPECT_EQ(m.vector_taken(), kGp);
  }
}

HV_EMU_SNIPPET(read_rbx_address, R"(
  mov rax, [rbx]
  hlt
)")
HV_EMU_SNIPPET(write_rbx_address, R"(
  mov qword ptr [rbx], 0x55
  hlt
)")
HV_EMU_SNIPPET(jump_rbx, R"(
  jmp rbx
)")

TEST(EmuPaging, NotPresentReadFaultsWithCr2) {
  TestMachine m;
  const uint64_t page = TestMachine::kData + 0x5000;
  m.set_pte(page, 0);
  m.load_code(read_rbx_address());
  m.cpu().gpr[3] = page + 0x123;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  EXPECT_EQ(m.cpu().cr2, page + 0x123);
  EXPECT_EQ(frame(m, true).error, 0u);  // not present, read, supervisor
}

TEST(EmuPaging, WriteToReadOnlyPageHonoursCr0Wp) {
  TestMachine m;
  const uint64_t page = TestMachine::kData + 0x6000;
  m.set_pte(page, page | 1);  // present, read-only, supervisor
  m.load_code(write_rbx_address());
  m.cpu().gpr[3] = page + 8;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  EXPECT_EQ(frame(m, true).error, 3u);  // present | write
  EXPECT_EQ(m.cpu().cr2, page + 8);
  EXPECT_EQ(m.read<uint64_t>(page + 8), 0u);

  // With CR0.WP clear the supervisor write goes through and sets A and D.
  TestMachine m2;
  m2.set_pte(page, page | 1);
  m2.cpu().cr0 &= ~x86::kCr0Wp;
  m2.load_code(write_rbx_address());
  m2.cpu().gpr[3] = page + 8;
  ASSERT_EQ(m2.run().stop, Stop::kHalt);
  EXPECT_EQ(m2.vector_taken(), -1);
  EXPECT_EQ(m2.read<uint64_t>(page + 8), 0x55u);
  EXPECT_EQ(m2.pte(page) & 0x60, 0x60u);  // accessed + dirty
}

TEST(EmuPaging, AccessedBitOnReadDirtyOnlyOnWrite) {
  TestMachine m;
  const uint64_t page = TestMachine::kData + 0x7000;
  m.load_code(read_rbx_address());
  m.cpu().gpr[3] = page;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.pte(page) & 0x60, 0x20u);
}

TEST(EmuPaging, ExecuteFromNxPageFaultsAsFetch) {
  TestMachine m;
  const uint64_t page = TestMachine::kData + 0x8000;
  m.write_value<uint8_t>(page, 0xf4);
  m.set_pte(page, page | 3 | (1ull << 63));
  m.load_code(jump_rbx());
  m.cpu().gpr[3] = page;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  EXPECT_EQ(frame(m, true).error, 0x11u);  // present | instruction fetch
  EXPECT_EQ(frame(m, true).rip, page);
  EXPECT_EQ(m.cpu().cr2, page);
}

TEST(EmuPaging, InvlpgMakesNewMappingVisible) {
  static const uint8_t code[] = {
      0x48, 0x8b, 0x03,  // mov rax, [rbx]
      0x48, 0x89, 0x0a,  // mov [rdx], rcx      (rewrites the PTE)
      0x0f, 0x01, 0x3b,  // invlpg [rbx]
      0x48, 0x8b, 0x33,  // mov rsi, [rbx]
      0xf4,
  };
  TestMachine m;
  const uint64_t a = TestMachine::kData + 0x1000, b = TestMachine::kData + 0x2000;
  m.write_value<uint64_t>(a, 0xaaaa);
  m.write_value<uint64_t>(b, 0xbbbb);
  m.load_code(code);
  m.cpu().gpr[3] = a;
  m.cpu().gpr[2] = TestMachine::kPt + (a >> 12) * 8;
  m.cpu().gpr[1] = b | 3;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.cpu().gpr[0], 0xaaaau);
  EXPECT_EQ(m.cpu().gpr[6], 0xbbbbu);
}

// Reads two pages, remaps both to a third page, reloads CR3 and reads again.
HV_EMU_SNIPPET(remap_then_reload_cr3, R"(
  mov rax, [rbx]
  mov rax, [rsi]
  mov [rdx], rcx
  mov [rdx + 8], rcx
  mov rax, cr3
  mov cr3, rax
  mov r8, [rbx]
  mov r9, [rsi]
  hlt
)")

// A CR3 load drops non-global translations only (with CR4.PGE): a global
// page keeps its old mapping until INVLPG or a CR4.PGE toggle.
TEST(EmuPaging, Cr3LoadKeepsGlobalTranslationsOnly) {
  for (const bool pge : {true, false}) {
    TestMachine m;
    const uint64_t global = TestMachine::kData + 0x1000, local = TestMachine::kData + 0x2000;
    const uint64_t target = TestMachine::kData + 0x3000;
    m.write_value<uint64_t>(global, 0x6666);
    m.write_value<uint64_t>(local, 0x1111);
    m.write_value<uint64_t>(target, 0x3333);
    m.set_pte(global, global | 3 | (1u << 8));
    ASSERT_EQ(TestMachine::kPt + (local >> 12) * 8, TestMachine::kPt + (global >> 12) * 8 + 8);
    if (pge) m.cpu().cr4 |= x86::kCr4Pge;
    m.load_code(remap_then_reload_cr3());
    m.cpu().gpr[3] = global;
    m.cpu().gpr[6] = local;
    m.cpu().gpr[2] = TestMachine::kPt + (global >> 12) * 8;
    m.cpu().gpr[1] = target | 3;
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    EXPECT_EQ(m.cpu().gpr[8], pge ? 0x6666u : 0x3333u) << "global page, PGE=" << pge;
    EXPECT_EQ(m.cpu().gpr[9], 0x3333u) << "non-global page, PGE=" << pge;
  }
}

// Reads a slice of the 2 MiB page at 2 MiB, points its PDE at physical 0
// and INVLPGs another slice of it: the whole large page's translation goes.
HV_EMU_SNIPPET(remap_large_page, R"(
  mov rax, [rbx]
  mov [rdx], rcx
  invlpg [rbx - 0x5000]
  mov rsi, [rbx]
  hlt
)")

TEST(EmuPaging, InvlpgDropsEveryCachedSliceOfALargePage) {
  TestMachine m;
  const uint64_t linear = 0x300008;  // in the 2 MiB page that PD[1] maps at 2 MiB
  m.write_value<uint64_t>(linear, 0x3333);
  m.write_value<uint64_t>(linear - (2ull << 20), 0x1111);  // where it maps once the PDE says physical 0
  m.load_code(remap_large_page());
  m.cpu().gpr[3] = linear;
  m.cpu().gpr[2] = TestMachine::kPd + 8;
  m.cpu().gpr[1] = 0x87;  // present, writable, user, 2 MiB page at physical 0
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  EXPECT_EQ(m.cpu().gpr[0], 0x3333u);
  EXPECT_EQ(m.cpu().gpr[6], 0x1111u);
}

// Calls code in the large page twice; between the calls the page is
// remapped (another slice INVLPGed), so the same RIP holds other code. The
// block links and the recent-block cache must not keep the old block.
HV_EMU_SNIPPET(call_remapped_code, R"(
  mov edi, 2
  xor r8d, r8d
1: call rbx
  add r8, rax
  mov [rdx], rcx
  invlpg [rbx + 0x5000]
  dec edi
  jnz 1b
  hlt
)")

TEST(EmuCode, RemappedCodeIsNotReachedThroughStaleLinks) {
  static const uint8_t one[] = {0xb8, 1, 0, 0, 0, 0xc3};  // mov eax, 1; ret
  static const uint8_t two[] = {0xb8, 2, 0, 0, 0, 0xc3};  // mov eax, 2; ret
  TestMachine m;
  const uint64_t function = 0x300000;
  m.write(function, one);
  m.write(function - (2ull << 20), two);
  m.load_code(call_remapped_code());
  m.cpu().gpr[3] = function;
  m.cpu().gpr[2] = TestMachine::kPd + 8;
  m.cpu().gpr[1] = 0x87;  // the 2 MiB page at 2 MiB now maps physical 0
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  EXPECT_EQ(m.cpu().gpr[8], 3u) << "the second call ran the old code";
}

// Calls code on a 4 KiB page twice; between the calls its PTE is pointed at
// another frame and the TLB flushed by a CR3 load (a non-global callee) or
// a CR4.PGE toggle (a global one), from a caller on a global page. A flush
// keeps the links when none could have gone (Tlb::linked_any,
// linked_non_global); these would go stale if one were kept wrongly.
HV_EMU_SNIPPET(call_code_remapped_by_cr3, R"(
  mov edi, 2
  xor r8d, r8d
1: call rbx
  add r8, rax
  mov [rdx], rcx
  mov rax, cr3
  mov cr3, rax
  dec edi
  jnz 1b
  hlt
)")

HV_EMU_SNIPPET(call_code_remapped_by_pge_toggle, R"(
  mov edi, 2
  xor r8d, r8d
1: call rbx
  add r8, rax
  mov [rdx], rcx
  mov rax, cr4
  and rax, ~0x80
  mov cr4, rax
  or rax, 0x80
  mov cr4, rax
  dec edi
  jnz 1b
  hlt
)")

TEST(EmuCode, CodeRemappedUnderLinksRunsNewAfterACr3LoadOrAGlobalFlush) {
  static const uint8_t one[] = {0xb8, 1, 0, 0, 0, 0xc3};  // mov eax, 1; ret
  static const uint8_t two[] = {0xb8, 2, 0, 0, 0, 0xc3};  // mov eax, 2; ret
  for (const bool global_callee : {false, true}) {
    TestMachine m;
    const uint64_t function = TestMachine::kData + 0x5000, other = TestMachine::kData + 0x6000;
    const uint64_t g = global_callee ? (1u << 8) : 0;
    m.write(function, one);
    m.write(other, two);
    m.cpu().cr4 |= x86::kCr4Pge;
    m.set_pte(TestMachine::kCode, TestMachine::kCode | 3 | (1u << 8));
    m.set_pte(function, function | 3 | g);
    m.load_code(global_callee ? call_code_remapped_by_pge_toggle() : call_code_remapped_by_cr3());
    m.cpu().gpr[3] = function;
    m.cpu().gpr[2] = TestMachine::kPt + (function >> 12) * 8;
    m.cpu().gpr[1] = other | 3 | g;
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    ASSERT_EQ(m.vector_taken(), -1);
    EXPECT_EQ(m.cpu().gpr[8], 3u) << "the second call ran the old code; global callee: " << global_callee;
  }
}

// A CR3 load that finds links on global pages only, or a flush that finds
// no link made since the last, leaves the epoch; anything else moves it.
TEST(EmuPaging, TlbEpochMovesOnlyWhenAFlushCanVoidALink) {
  Tlb tlb;
  const uint64_t start = tlb.epoch;
  tlb.flush();
  tlb.flush_non_global();
  EXPECT_EQ(tlb.epoch, start) << "no link made";
  tlb.note_link(0xffffffff81000000, 0, true);
  tlb.flush_non_global();
  EXPECT_EQ(tlb.epoch, start) << "a CR3 load keeps global translations";
  tlb.flush();
  EXPECT_EQ(tlb.epoch, start + 1);
  tlb.flush();
  EXPECT_EQ(tlb.epoch, start + 1) << "the second flush of a CR4.PGE toggle";
  tlb.note_link(0x400000, 0, false);
  tlb.flush_non_global();
  EXPECT_EQ(tlb.epoch, start + 2);
}

// A block whose code page was written is kept until enough pile up (links
// to it are void by the write already); the generation, which voids every
// link, moves once for them. Any other drop moves it at once.
TEST(EmuCode, BlocksOfWrittenPagesAreFreedInBatches) {
  BlockCache cache;
  auto block_at = [](uint64_t phys) {
    auto b = std::make_unique<Block>();
    b->phys = phys;
    b->key = BlockCache::key(phys, 8, false);
    return b;
  };
  const uint64_t start = cache.generation();
  uint64_t phys = 0x100000;
  for (int i = 0; i < 255; ++i, phys += 0x1000) {
    cache.insert(block_at(phys));
    cache.retire(BlockCache::key(phys, 8, false));
  }
  EXPECT_EQ(cache.generation(), start);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.find(BlockCache::key(0x100000, 8, false)), nullptr);
  cache.insert(block_at(phys));
  cache.retire(BlockCache::key(phys, 8, false));
  EXPECT_EQ(cache.generation(), start + 1) << "the 256th retired block frees them all";
  cache.insert(block_at(phys));
  cache.erase(BlockCache::key(phys, 8, false));
  EXPECT_EQ(cache.generation(), start + 2);
}

// The cache's table against a std::map, through growth and deletions that
// must move later entries back into the hole.
TEST(EmuCode, BlockCacheFindsWhatItHoldsThroughGrowthAndDeletions) {
  BlockCache cache;
  std::map<uint64_t, Block*> expected;
  uint64_t seed = 12345;
  auto next = [&] { return seed = seed * 6364136223846793005ull + 1442695040888963407ull; };
  for (int round = 0; round < 20000; ++round) {
    // Keys crowd into few pages so probe runs collide and wrap.
    const uint64_t key = BlockCache::key((next() >> 40) % 0x3000 * 0x10 + 0x100000, 8, false);
    if (next() % 3 != 0) {
      auto b = std::make_unique<Block>();
      b->key = key;
      Block* raw = b.get();
      cache.insert(std::move(b));
      expected[key] = raw;
    } else {
      if (next() % 2)
        cache.erase(key);
      else
        cache.retire(key);
      expected.erase(key);
    }
  }
  EXPECT_EQ(cache.size(), expected.size());
  for (const auto& [key, block] : expected) ASSERT_EQ(cache.find(key), block) << std::hex << key;
  for (uint64_t phys = 0x100000; phys < 0x100000 + 0x30000; phys += 0x10) {
    const uint64_t key = BlockCache::key(phys, 8, false);
    if (!expected.count(key)) ASSERT_EQ(cache.find(key), nullptr) << std::hex << key;
  }
}

// 64-bit PUSH/POP/CALL/RET (the specialised forms): PUSH RSP pushes the
// old value, POP RSP loads the popped one, CALL pushes the return address,
// and RET to a non-canonical address faults #GP(0) with RSP unchanged.
HV_EMU_SNIPPET(stack_ops_64, R"(
  mov r12, rsp
  mov rax, 0x1234
  push rax
  pop rbx
  push rsp
  pop rcx
  push r12
  pop rsp
  lea r11, [rip + 4f]
  call 1f
4: jmp 2f
1: mov r8, [rsp]
  ret
2: mov r9, 0x8000000000000000
  push r9
  lea r10, [rip + 3f]
3: ret
)")

TEST(EmuControl, StackOperationsIn64BitMode) {
  TestMachine m;
  m.load_code(stack_ops_64());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kGp);
  const Cpu& cpu = m.cpu();
  EXPECT_EQ(cpu.gpr[3], 0x1234u);
  EXPECT_EQ(cpu.gpr[1], cpu.gpr[12]) << "PUSH RSP pushes the value before the push";
  EXPECT_EQ(cpu.gpr[8], cpu.gpr[11]) << "CALL pushes the address after it";
  const Frame f = frame(m, true);
  EXPECT_EQ(f.error, 0u);
  EXPECT_EQ(f.rip, cpu.gpr[10]) << "the faulting RET is not done";
  EXPECT_EQ(f.rsp, cpu.gpr[12] - 8) << "RSP unchanged by the faulting RET";
}

// The retired-instruction count is exact when a fault ends a block midway:
// the instructions before it, the faulting one, then the handler's HLT.
HV_EMU_SNIPPET(fault_mid_block, R"(
  mov eax, 1
  mov ebx, 2
  ud2
)")

TEST(EmuControl, InstructionCountIsExactAcrossAFault) {
  TestMachine m;
  m.load_code(fault_mid_block());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kUd);
  EXPECT_EQ(m.interpreter().instructions(), 4u);
}

HV_EMU_SNIPPET(self_modifying, R"(
  lea rbx, [rip + 2f]
  mov byte ptr [rbx + 1], 0x42
2: mov eax, 0x11
  hlt
)")

TEST(EmuCode, WriteToDecodedCodeTakesEffect) {
  TestMachine m;
  m.load_code(self_modifying());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.cpu().gpr[0], 0x42u);
  // Run the same code again from the start: the block was re-decoded, the store is idempotent.
  m.cpu().rip = TestMachine::kCode;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.cpu().gpr[0], 0x42u);
}

TEST(EmuCode, HostWriteThroughCodeMapInvalidates) {
  static const uint8_t first[] = {0xb8, 1, 0, 0, 0, 0xf4};   // mov eax, 1; hlt
  static const uint8_t second[] = {0xb8, 2, 0, 0, 0, 0xf4};  // mov eax, 2; hlt
  TestMachine m;
  m.load_code(first);
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.cpu().gpr[0], 1u);
  m.load_code(second);
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.cpu().gpr[0], 2u);
}

// Another vCPU's block: a store into the page at rbx while it is data (a
// write TLB entry that skips the code check), an MMIO read that the test
// holds until the first vCPU has decoded code from that page, then, in the
// same block, a store that rewrites that code's immediate and a second held
// read.
HV_EMU_SNIPPET(patch_between_mmio_reads, R"(
  mov dword ptr [rbx + 8], 0
  mov eax, dword ptr [rsi]
  mov dword ptr [rbx + 1], 2
  mov eax, dword ptr [rsi]
  hlt
)")

// Holds each MMIO read until the test releases it: the vCPU stays inside
// its block meanwhile.
class GateDevice : public BusDevice {
 public:
  std::string_view name() const override { return "gate"; }
  void read(uint64_t, std::span<uint8_t> data) override {
    std::unique_lock lock(mutex_);
    const unsigned me = ++arrived_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_ >= me; });
    std::memset(data.data(), 0, data.size());
  }
  void write(uint64_t, std::span<const uint8_t>) override {}
  void wait_for_reader(unsigned n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return arrived_ >= n; });
  }
  void release() {
    std::lock_guard lock(mutex_);
    ++released_;
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  unsigned arrived_ = 0, released_ = 0;
};

// Cross-modifying code in the one-block window: vCPU B is already inside a
// block (past its block-boundary epoch check) with a write entry for page P
// made while P was data, when vCPU A decodes P (P becomes code, the epoch
// moves). B's next store into P in that block skips the code check, so it
// does not invalidate A's copy. A must run the new code once the store is
// visible, while B is still in that block too (as code patched before a
// signal runs patched after it), and not keep its copy for good.
TEST(EmuCode, StoreByAVcpuAlreadyInsideABlockWhenThePageBecameCodeIsSeen) {
  static const uint8_t page_code[] = {0xb8, 1, 0, 0, 0, 0xf4};  // mov eax, 1; hlt
  constexpr uint64_t kPage = TestMachine::kData + 0x3000;
  constexpr uint64_t kGate = 0x400000;  // past RAM: MMIO
  TestMachine m;
  m.write_value<uint64_t>(TestMachine::kPd + 16, kGate | 0x83);  // map 4-6 MiB (2 MiB page)
  m.write(kPage, page_code);
  Bus mmio("test mmio");
  auto gate = std::make_shared<GateDevice>();
  ASSERT_TRUE(mmio.insert(gate, kGate, 0x1000).ok());

  ASSERT_TRUE(m.code_map().attach(0));
  ASSERT_TRUE(m.code_map().attach(1));
  m.cpu().code_slot = 0;
  Cpu b = m.cpu();
  b.code_slot = 1;
  b.internal_mmio = &mmio;
  Interpreter other(b);
  other.set_translator(nullptr);
  m.load_code(patch_between_mmio_reads(), TestMachine::kCode + 0x800);
  b.rip = TestMachine::kCode + 0x800;
  b.gpr[3] = kPage;
  b.gpr[6] = kGate;
  Interpreter::Outcome b_outcome{Stop::kFailure, "did not run"};
  std::thread b_thread([&] { b_outcome = other.run(1000); });
  auto run_page = [&] {
    m.cpu().rip = kPage;
    const auto out = m.run(1000);
    EXPECT_EQ(out.stop, Stop::kHalt) << out.detail;
    return m.cpu().gpr[0];
  };

  gate->wait_for_reader(1);   // B stored into P (data) and waits inside its block
  EXPECT_EQ(run_page(), 1u);  // A decodes P: P becomes code
  gate->release();            // B goes on in the same block and rewrites A's immediate
  gate->wait_for_reader(2);   // ... and waits again, still in that block
  ASSERT_EQ(m.read<uint8_t>(kPage + 1), 2u);
  EXPECT_EQ(run_page(), 2u) << "A ran the copy of P it decoded before B's store";
  gate->release();
  b_thread.join();
  ASSERT_EQ(b_outcome.stop, Stop::kHalt) << b_outcome.detail;
  // B left its block (acknowledged): A's copy is confirmed and runs on.
  EXPECT_EQ(run_page(), 2u);
  EXPECT_EQ(run_page(), 2u);
}

HV_EMU_SNIPPET(mmio_add, R"(
  mov rbx, 0xc0001000
  mov eax, 5
  add eax, dword ptr [rbx]
  mov dword ptr [rbx + 4], eax
  hlt
)")

TEST(EmuIo, MmioReadAndWriteExitAndRestart) {
  TestMachine m;
  // Map 1 GiB at 0xC0000000 to guest-physical 0xC0000000 (not RAM).
  m.write_value<uint64_t>(TestMachine::kPdpt + 3 * 8, 0xc0000000ull | 0x83);
  m.load_code(mmio_add());
  auto out = m.run();
  ASSERT_EQ(out.stop, Stop::kIo) << out.detail;
  IoRecord& r = m.cpu().io.records[m.cpu().io.count - 1];
  EXPECT_FALSE(r.is_port);
  EXPECT_FALSE(r.is_write);
  EXPECT_EQ(r.address, 0xc0001000u);
  EXPECT_EQ(r.size, 4);
  const uint32_t device_value = 37;
  std::memcpy(r.data, &device_value, 4);
  out = m.run();
  ASSERT_EQ(out.stop, Stop::kIo) << out.detail;
  IoRecord& w = m.cpu().io.records[m.cpu().io.count - 1];
  EXPECT_TRUE(w.is_write);
  EXPECT_EQ(w.address, 0xc0001004u);
  uint32_t written;
  std::memcpy(&written, w.data, 4);
  EXPECT_EQ(written, 42u);
  out = m.run();
  ASSERT_EQ(out.stop, Stop::kHalt) << out.detail;
  EXPECT_EQ(m.cpu().gpr[0], 42u);
}

HV_EMU_SNIPPET(port_io, R"(
  mov dx, 0x3f8
  mov al, 0x41
  out dx, al
  in al, 0x60
  hlt
)")

TEST(EmuIo, PortInAndOut) {
  TestMachine m;
  m.load_code(port_io());
  ASSERT_EQ(m.run().stop, Stop::kIo);
  IoRecord* r = &m.cpu().io.records[m.cpu().io.count - 1];
  EXPECT_TRUE(r->is_port);
  EXPECT_TRUE(r->is_write);
  EXPECT_EQ(r->address, 0x3f8u);
  EXPECT_EQ(r->data[0], 0x41);
  // IN and OUT stop at themselves, having changed nothing (a flagged exit,
  // not a throw): RIP at the OUT (after MOV DX 4 bytes, MOV AL 2), then at
  // the IN with AL as the OUT left it.
  EXPECT_EQ(m.cpu().rip, TestMachine::kCode + 6);
  EXPECT_FALSE(m.cpu().io.exit_pending);
  ASSERT_EQ(m.run().stop, Stop::kIo);
  r = &m.cpu().io.records[m.cpu().io.count - 1];
  EXPECT_FALSE(r->is_write);
  EXPECT_EQ(r->address, 0x60u);
  EXPECT_EQ(m.cpu().rip, TestMachine::kCode + 7);
  EXPECT_EQ(m.cpu().gpr[0] & 0xff, 0x41u);
  EXPECT_EQ(m.interpreter().instructions(), 3u) << "the exiting instructions count when they complete";
  r->data[0] = 0x9c;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.cpu().gpr[0] & 0xff, 0x9cu);
}

HV_EMU_SNIPPET(int_and_iret, R"(
  int 0x40
  int 0x40
  hlt
)")
HV_EMU_SNIPPET(handler_inc_iret, R"(
  add rbx, 1
  iretq
)")

void set_gate(TestMachine& m, unsigned vector, uint64_t target, unsigned dpl = 0, unsigned ist = 0) {
  uint64_t lo = (target & 0xffff) | (static_cast<uint64_t>(TestMachine::kCode64) << 16) | (0xeull << 40) |
                (1ull << 47) | (static_cast<uint64_t>(dpl) << 45) | ((target >> 16 & 0xffff) << 48) |
                (static_cast<uint64_t>(ist) << 32);
  m.write_value<uint64_t>(TestMachine::kIdt + vector * 16, lo);
  m.write_value<uint64_t>(TestMachine::kIdt + vector * 16 + 8, target >> 32);
}

TEST(EmuInterrupts, SoftwareInterruptAndIretq) {
  TestMachine m;
  const uint64_t handler = TestMachine::kCode + 0x800;
  m.load_code(handler_inc_iret(), handler);
  set_gate(m, 0x40, handler);
  m.load_code(int_and_iret());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.vector_taken(), -1);
  EXPECT_EQ(m.cpu().gpr[3], 2u);
  EXPECT_EQ(m.cpu().gpr[4], TestMachine::kStackTop);
  EXPECT_EQ(m.cpu().rip, TestMachine::kCode + 5);
}

HV_EMU_SNIPPET(to_user_mode, R"(
  push 0x2b
  push 0x1f000
  push 0x202
  push 0x23
  push rbx
  iretq
)")
HV_EMU_SNIPPET(user_code, R"(
  mov rcx, 0x77
  int 0x80
)")

TEST(EmuInterrupts, UserModeInterruptSwitchesToRsp0) {
  TestMachine m;
  const uint64_t user = TestMachine::kData + 0x3000;  // a U=1 page
  m.load_code(user_code(), user);
  m.load_code(to_user_mode());
  m.cpu().gpr[3] = user;
  m.cpu().gpr[4] = 0x7f000;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), 0x80);
  EXPECT_EQ(m.cpu().cpl, 0);
  EXPECT_EQ(m.cpu().gpr[1], 0x77u);
  Frame f = frame(m, false);
  EXPECT_EQ(m.cpu().gpr[4], TestMachine::kStackTop - 40);
  EXPECT_EQ(f.rip, user + 9);
  EXPECT_EQ(f.cs, TestMachine::kUserCode64);
  EXPECT_EQ(f.ss, TestMachine::kUserData);
  EXPECT_EQ(f.rsp, 0x1f000u);
  EXPECT_TRUE(f.rflags & kFlagIf);
}

TEST(EmuInterrupts, UserAccessToSupervisorPageFaults) {
  static const uint8_t user_read[] = {0x48, 0x8b, 0x06, 0xf4};  // mov rax, [rsi]; hlt
  TestMachine m;
  const uint64_t user = TestMachine::kData + 0x3000;
  m.load_code(user_read, user);
  m.load_code(to_user_mode());
  m.cpu().gpr[3] = user;
  m.cpu().gpr[6] = 0x20000;  // supervisor-only page
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  EXPECT_EQ(m.read<uint64_t>(m.cpu().gpr[4]), 5u);  // present | user
  EXPECT_EQ(m.cpu().cr2, 0x20000u);
}

TEST(EmuExceptions, DoubleFaultUsesIstAndTripleFaultShutsDown) {
  {
    TestMachine m;
    // #GP gate not present: the #GP raised by the non-canonical read becomes #NP, then #DF.
    m.write_value<uint64_t>(TestMachine::kIdt + kGp * 16, 0);
    m.load_code(noncanonical_read());
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    ASSERT_EQ(m.vector_taken(), kDf);
    EXPECT_EQ(m.cpu().gpr[4], TestMachine::kIstStackTop - 48);
    EXPECT_EQ(m.read<uint64_t>(m.cpu().gpr[4]), 0u);
  }
  {
    TestMachine m;
    m.cpu().idt.limit = 0;
    m.load_code(ud2_code());
    EXPECT_EQ(m.run().stop, Stop::kShutdown);
  }
}

HV_EMU_SNIPPET(mode_switch, R"(
.code16
ms_start:
  cli
  xor ax, ax
  mov ds, ax
  lgdt [ms_gdtr_abs]
  mov eax, cr0
  or eax, 1
  mov cr0, eax
  .byte 0x66, 0xea
  .long 0x8000 + ms_pm32 - ms_start
  .word 0x18
.code32
ms_pm32:
  mov ax, 0x10
  mov ds, ax
  mov ss, ax
  mov esp, 0x7000
  mov eax, cr4
  or eax, 0x20
  mov cr4, eax
  mov eax, 0x1000
  mov cr3, eax
  mov ecx, 0xc0000080
  rdmsr
  or eax, 0x100
  wrmsr
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  .byte 0xea
  .long 0x8000 + ms_lm64 - ms_start
  .word 0x08
.code64
ms_lm64:
  mov rax, 0x123456789
  push rax
  pop rbx
  hlt
ms_gdtr:
  .word 0x4f
  .long 0x5000
.set ms_gdtr_abs, 0x8000 + ms_gdtr - ms_start
)")

TEST(EmuModes, RealToProtectedToLongMode) {
  TestMachine m;
  m.load_code(mode_switch(), 0x8000);
  m.enter_real_mode(0x8000);
  auto out = m.run();
  ASSERT_EQ(out.stop, Stop::kHalt) << out.detail;
  EXPECT_EQ(m.vector_taken(), -1);
  EXPECT_TRUE(m.cpu().long_mode);
  EXPECT_TRUE(m.cpu().mode64);
  EXPECT_EQ(m.cpu().seg[kCs].selector, 0x08);
  EXPECT_EQ(m.cpu().gpr[3], 0x123456789u);
  EXPECT_EQ(m.cpu().gpr[4], 0x7000u);
  EXPECT_TRUE(m.cpu().efer & x86::kEferLma);
}

HV_EMU_SNIPPET(real_mode_int, R"(
.code16
  mov ax, 0x1234
  int 0x21
  hlt
)")

TEST(EmuModes, RealModeInterruptThroughIvt) {
  static const uint8_t handler[] = {0x43, 0xcf};  // inc bx; iret (16-bit)
  TestMachine m;
  m.load_code(handler, 0x9000);
  m.write_value<uint32_t>(0x21 * 4, 0x9000);  // 0000:9000
  m.load_code(real_mode_int(), 0x8000);
  m.enter_real_mode(0x8000);
  auto out = m.run();
  ASSERT_EQ(out.stop, Stop::kHalt) << out.detail;
  EXPECT_EQ(m.cpu().gpr[3] & 0xffff, 1u);
  EXPECT_EQ(m.cpu().gpr[0] & 0xffff, 0x1234u);
  EXPECT_EQ(m.cpu().gpr[4] & 0xffff, 0x7000u);
}

HV_EMU_SNIPPET(cpuid_vendor, R"(
  xor eax, eax
  cpuid
  hlt
)")

TEST(EmuSystem, CpuidSaysGenuineIntel) {
  TestMachine m;
  m.load_code(cpuid_vendor());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  char vendor[13] = {};
  uint32_t parts[3] = {static_cast<uint32_t>(m.cpu().gpr[3]), static_cast<uint32_t>(m.cpu().gpr[2]),
                       static_cast<uint32_t>(m.cpu().gpr[1])};
  std::memcpy(vendor, parts, 12);
  EXPECT_STREQ(vendor, "GenuineIntel");
  EXPECT_GE(m.cpu().gpr[0], 0x15u);
}

HV_EMU_SNIPPET(syscall_roundtrip, R"(
  mov ecx, 0xc0000081
  xor eax, eax
  mov edx, 0x00130008
  wrmsr
  mov ecx, 0xc0000082
  mov rax, rbx
  xor edx, edx
  wrmsr
  mov ecx, 0xc0000084
  mov eax, 0x200
  xor edx, edx
  wrmsr
  lea rcx, [rip + 3f]
  mov r11, 0x202
  sysretq
3: syscall
)")

TEST(EmuSystem, SysretToUserAndSyscallBack) {
  static const uint8_t kernel_entry[] = {0xf4};  // hlt
  TestMachine m;
  const uint64_t entry = TestMachine::kCode + 0x800;
  m.load_code(kernel_entry, entry);
  // The user code lives on a U=1 page.
  const uint64_t user = TestMachine::kData + 0x4000;
  m.load_code(syscall_roundtrip(), user);
  m.cpu().gpr[3] = entry;
  auto out = m.run();
  ASSERT_EQ(out.stop, Stop::kHalt) << out.detail;
  EXPECT_EQ(m.cpu().rip, entry + 1);
  EXPECT_EQ(m.cpu().cpl, 0);
  EXPECT_EQ(m.cpu().seg[kCs].selector, 0x08);
  EXPECT_EQ(m.cpu().seg[kSs].selector, 0x10);
  EXPECT_EQ(m.cpu().gpr[1], user + syscall_roundtrip().size());  // RCX = return address
  EXPECT_EQ(m.cpu().gpr[11] & 0x200, 0x200u);                    // R11 = user RFLAGS
  EXPECT_FALSE(read_flags(m.cpu()) & kFlagIf);                   // masked by SFMASK
}

HV_EMU_SNIPPET(string_ops, R"(
  mov rsi, 0x100000
  mov rdi, 0x101000
  mov ecx, 100
  cld
  rep movsb
  mov rdi, 0x102000
  mov rax, 0x1122334455667788
  mov ecx, 16
  rep stosq
  mov rdi, 0x100000
  mov al, 0x99
  mov ecx, 200
  repne scasb
  hlt
)")

TEST(EmuString, RepMovsStosScas) {
  TestMachine m;
  std::vector<uint8_t> src(100);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i + 1);
  src[50] = 0x99;
  m.write(0x100000, src);
  m.load_code(string_ops());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(m.read<uint8_t>(0x101000 + i), src[i]) << i;
  for (int i = 0; i < 16; ++i) EXPECT_EQ(m.read<uint64_t>(0x102000 + 8 * i), 0x1122334455667788u);
  EXPECT_EQ(m.read<uint64_t>(0x102000 + 8 * 16), 0u);
  EXPECT_EQ(m.cpu().gpr[7], 0x100000u + 51);  // stopped after the match
  EXPECT_EQ(m.cpu().gpr[1], 200u - 51);
}

TEST(EmuString, RepMovsFaultMidwayIsRestartable) {
  TestMachine m;
  const uint64_t dst = TestMachine::kData + 0x9000;
  m.set_pte(dst + 0x1000, 0);                        // the copy runs off the end of dst's page
  static const uint8_t code[] = {0xf3, 0xa4, 0xf4};  // rep movsb; hlt
  m.load_code(code);
  m.cpu().gpr[6] = 0x100000;
  m.cpu().gpr[7] = dst + 0xff0;
  m.cpu().gpr[1] = 0x20;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  EXPECT_EQ(m.cpu().cr2, dst + 0x1000);
  EXPECT_EQ(m.cpu().gpr[1], 0x10u);  // 16 bytes done, 16 to go
  EXPECT_EQ(frame(m, true).rip, TestMachine::kCode);
}

// REP MOVS/STOS run a page at a time as the host's own instruction where
// both pages are RAM in the TLB; what follows checks that this gives what
// one element at a time gives: overlapping ranges, elements across page
// boundaries, a segment base on the source, and a fault at the exact element.
TEST(EmuString, RepMovsbOverlappingForwardRepeatsThePatternAcrossPages) {
  TestMachine m;
  const uint64_t src = TestMachine::kData + 0x10ffd;
  m.write(src, std::vector<uint8_t>{0xa1, 0xb2, 0xc3});
  static const uint8_t code[] = {0xf3, 0xa4, 0xf4};  // rep movsb; hlt
  m.load_code(code);
  m.cpu().gpr[6] = src;
  m.cpu().gpr[7] = src + 3;
  m.cpu().gpr[1] = 0x2801;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  for (uint64_t i = 0; i < 0x2804; ++i)
    ASSERT_EQ(m.read<uint8_t>(src + i), (std::array<uint8_t, 3>{0xa1, 0xb2, 0xc3}[i % 3])) << i;
  EXPECT_EQ(m.cpu().gpr[1], 0u);
  EXPECT_EQ(m.cpu().gpr[6], src + 0x2801);
  EXPECT_EQ(m.cpu().gpr[7], src + 3 + 0x2801);
}

TEST(EmuString, RepMovsqFromAnFsBaseWithElementsAcrossPageBoundariesCopiesEveryByte) {
  TestMachine m;
  const uint64_t src = TestMachine::kData + 0x20004, dst = TestMachine::kData + 0x30ffc;
  std::vector<uint8_t> bytes(8000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + i / 251);
  m.write(src, bytes);
  static const uint8_t code[] = {0x64, 0xf3, 0x48, 0xa5, 0xf4};  // rep movsq qword ptr es:[rdi], fs:[rsi]; hlt
  m.load_code(code);
  m.cpu().seg[kFs].base = 0x1000;
  m.cpu().gpr[6] = src - 0x1000;
  m.cpu().gpr[7] = dst;
  m.cpu().gpr[1] = 1000;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(m.read<uint8_t>(dst + i), bytes[i]) << i;
  EXPECT_EQ(m.read<uint8_t>(dst + bytes.size()), 0u);
  EXPECT_EQ(m.cpu().gpr[6], src - 0x1000 + 8000);
  EXPECT_EQ(m.cpu().gpr[7], dst + 8000);
}

TEST(EmuString, RepStoswFaultsAtTheElementThatReachesAMissingPage) {
  TestMachine m;
  const uint64_t dst = TestMachine::kData + 0x40001;
  m.set_pte(TestMachine::kData + 0x42000, 0);
  static const uint8_t code[] = {0x66, 0xf3, 0xab, 0xf4};  // rep stosw; hlt
  m.load_code(code);
  m.cpu().gpr[0] = 0xbeef;
  m.cpu().gpr[7] = dst;
  m.cpu().gpr[1] = 5000;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  // Word 0xfff, at ...41fff, is the first to touch the missing page.
  EXPECT_EQ(m.cpu().cr2, TestMachine::kData + 0x42000);
  EXPECT_EQ(m.cpu().gpr[1], 5000u - 0xfff);
  EXPECT_EQ(m.cpu().gpr[7], dst + 2 * 0xfff);
  EXPECT_EQ(frame(m, true).rip, TestMachine::kCode);
  for (uint64_t i = 0; i < 0xfff; ++i) ASSERT_EQ(m.read<uint16_t>(dst + 2 * i), 0xbeef) << i;
  EXPECT_EQ(m.read<uint8_t>(dst + 2 * 0xfff), 0u);
}

HV_EMU_SNIPPET(locked_ops, R"(
  mov rbx, 0x100000
  mov qword ptr [rbx], 10
  mov eax, 10
  mov ecx, 20
  lock cmpxchg dword ptr [rbx], ecx
  mov edx, 5
  lock xadd dword ptr [rbx], edx
  lock inc qword ptr [rbx + 8]
  lock bts qword ptr [rbx + 16], 3
  hlt
)")

TEST(EmuAtomics, LockedInstructions) {
  TestMachine m;
  m.load_code(locked_ops());
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.read<uint32_t>(0x100000), 25u);
  EXPECT_EQ(m.cpu().gpr[2], 20u);
  EXPECT_EQ(m.read<uint64_t>(0x100008), 1u);
  EXPECT_EQ(m.read<uint64_t>(0x100010), 8u);
}

TEST(EmuControl, KickInterruptsAnEndlessLoop) {
  static const uint8_t spin[] = {0xeb, 0xfe};  // jmp $
  TestMachine m;
  m.load_code(spin);
  m.interpreter().kick();
  EXPECT_EQ(m.run(UINT64_MAX).stop, Stop::kInterrupted);
  EXPECT_EQ(m.run(10000).stop, Stop::kInstructionLimit);
  EXPECT_EQ(m.cpu().rip, TestMachine::kCode);
}

}  // namespace
}  // namespace hostvisor::emu

namespace hostvisor::emu {
namespace {

HV_EMU_SNIPPET(fxsave_roundtrip, R"(
  movdqu xmm3, [rsi]
  fninit
  fxsave64 [rdi]
  pxor xmm3, xmm3
  fxrstor64 [rdi]
  movdqu [rsi + 16], xmm3
  fnstcw [rsi + 32]
  hlt
)")

TEST(EmuFpu, FxsaveFxrstorRoundTripAndTsFaults) {
  TestMachine m;
  std::vector<uint8_t> pattern(16);
  for (int i = 0; i < 16; ++i) pattern[i] = static_cast<uint8_t>(0xa0 + i);
  m.write(0x100000, pattern);
  m.load_code(fxsave_roundtrip());
  m.cpu().gpr[6] = 0x100000;
  m.cpu().gpr[7] = 0x101000;
  ASSERT_EQ(m.run().stop, Interpreter::Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(m.read<uint8_t>(0x100010 + i), pattern[i]);
    EXPECT_EQ(m.read<uint8_t>(0x101000 + 160 + 3 * 16 + i), pattern[i]);  // XMM3 in the FXSAVE image
  }
  EXPECT_EQ(m.read<uint16_t>(0x101000), 0x37fu);        // FCW after FNINIT
  EXPECT_EQ(m.read<uint32_t>(0x101000 + 24), 0x1f80u);  // MXCSR
  EXPECT_EQ(m.read<uint16_t>(0x100020), 0x37fu);

  // CR0.TS makes SSE and x87 instructions raise #NM (lazy FPU switching).
  TestMachine ts;
  ts.load_code(fxsave_roundtrip());
  ts.cpu().gpr[6] = 0x100000;
  ts.cpu().gpr[7] = 0x101000;
  ts.cpu().cr0 |= 1ull << 3;
  ASSERT_EQ(ts.run().stop, Interpreter::Stop::kHalt);
  EXPECT_EQ(ts.vector_taken(), kNm);

  // Misaligned FXSAVE area: #GP(0).
  TestMachine mis;
  mis.load_code(fxsave_roundtrip());
  mis.cpu().gpr[6] = 0x100000;
  mis.cpu().gpr[7] = 0x101008;
  ASSERT_EQ(mis.run().stop, Interpreter::Stop::kHalt);
  EXPECT_EQ(mis.vector_taken(), kGp);
}

TEST(EmuExceptions, TrapFlagSingleSteps) {
  static const uint8_t code[] = {0x90, 0x90, 0xf4};  // nop; nop; hlt
  TestMachine m;
  m.load_code(code);
  write_flags(m.cpu(), 2 | kFlagTf);
  ASSERT_EQ(m.run().stop, Interpreter::Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kDb);
  EXPECT_EQ(m.read<uint64_t>(m.cpu().gpr[4]), TestMachine::kCode + 1);  // a trap: after the first NOP
  EXPECT_TRUE(m.cpu().dr[6] & (1u << 14));
  EXPECT_FALSE(read_flags(m.cpu()) & kFlagTf);  // the handler runs without TF
}

HV_EMU_SNIPPET(legacy_paging, R"(
.code32
  mov eax, dword ptr [0x405010]
  mov ebx, dword ptr [0x406000]
  hlt
)")

// 32-bit protected mode (no long mode) with the IDT in 32-bit gate format.
void enter_legacy_protected_mode(TestMachine& m, uint64_t cr3, uint64_t cr4) {
  Cpu& cpu = m.cpu();
  const uint64_t code32 = m.read<uint64_t>(TestMachine::kGdt + TestMachine::kCode32);
  cpu.seg[kCs] = segment_from_descriptor(code32, TestMachine::kCode32);
  cpu.efer = 0;
  cpu.cr4 = cr4;
  cpu.cr3 = cr3;
  const uint64_t idt = 0x22000;
  for (unsigned v = 0; v < 32; ++v) {
    const uint64_t target = TestMachine::kVectorStubs + v * 8;
    m.write_value<uint64_t>(idt + v * 8, (target & 0xffff) | (uint64_t{TestMachine::kCode32} << 16) | (0xeull << 40) |
                                             (1ull << 47) | ((target >> 16) << 48));
  }
  cpu.idt = {idt, 32 * 8 - 1};
  cpu.gpr[4] = 0x7f000;
  update_mode(cpu);
  tlb_flush(cpu);
}

TEST(EmuPaging, LegacyTwoLevelPagingWithLargePage) {
  TestMachine m;
  const uint64_t pd = 0x20000, pt = 0x21000;
  m.write_value<uint32_t>(pd, 0x83);                  // 4 MiB page at 0, writable
  m.write_value<uint32_t>(pd + 4, pt | 3);            // 4-8 MiB through a page table
  m.write_value<uint32_t>(pt + 5 * 4, 0x100000 | 3);  // 0x405000 -> 0x100000
  m.write_value<uint32_t>(0x100010, 0xfeedf00d);
  m.load_code(legacy_paging());
  enter_legacy_protected_mode(m, pd, 1ull << 4);  // CR4.PSE
  ASSERT_EQ(m.run().stop, Interpreter::Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  EXPECT_EQ(m.cpu().gpr[0] & 0xffffffff, 0xfeedf00du);
  EXPECT_EQ(m.cpu().cr2, 0x406000u);
  EXPECT_EQ(m.read<uint32_t>(m.cpu().gpr[4]), 0u);                          // error code: not present, read, supervisor
  EXPECT_EQ(m.read<uint32_t>(m.cpu().gpr[4] + 4), TestMachine::kCode + 5);  // EIP of the faulting load
  EXPECT_EQ(m.read<uint32_t>(pt + 5 * 4) & 0x20, 0x20u);                    // accessed
}

TEST(EmuPaging, PaeLegacyPaging) {
  TestMachine m;
  const uint64_t pdpt = 0x20000, pd = 0x21000, pt = 0x23000;
  m.write_value<uint64_t>(pdpt, pd | 1);
  m.write_value<uint64_t>(pd, 0x83);            // 2 MiB page at 0
  m.write_value<uint64_t>(pd + 2 * 8, pt | 3);  // 4-6 MiB through a page table
  m.write_value<uint64_t>(pt + 5 * 8, 0x100000 | 3);
  m.write_value<uint64_t>(pt + 6 * 8, 0x101000 | 3 | (1ull << 51));  // a reserved physical-address bit
  m.write_value<uint32_t>(0x100010, 0xabcd1234);
  m.load_code(legacy_paging());
  enter_legacy_protected_mode(m, pdpt, x86::kCr4Pae);
  ASSERT_EQ(m.run().stop, Interpreter::Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kPf);
  EXPECT_EQ(m.cpu().gpr[0] & 0xffffffff, 0xabcd1234u);
  EXPECT_EQ(m.cpu().cr2, 0x406000u);
  EXPECT_EQ(m.read<uint32_t>(m.cpu().gpr[4]), 9u);  // present | reserved bit
}

// ---- x87, MMX and MXCSR: stack faults, exception delivery, state round trips ----

HV_EMU_SNIPPET(x87_stack_overflow, R"(
  fninit
  fld1
  fld1
  fld1
  fld1
  fld1
  fld1
  fld1
  fldpi
  fnstsw word ptr [rdi]
  fldz
  fnstsw ax
  fstp tbyte ptr [rdi + 16]
  hlt
)")

TEST(EmuFpu, StackOverflowLoadsIndefiniteWithStackFault) {
  TestMachine m;
  m.load_code(x87_stack_overflow());
  m.cpu().gpr[7] = 0x101000;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  EXPECT_EQ(m.read<uint16_t>(0x101000), 0x0000u);  // eight pushes: TOP wrapped to 0, no exception
  const uint16_t fsw = static_cast<uint16_t>(m.cpu().gpr[0]);
  // The ninth push overflows: IE and SF with C1=1 (overflow); the masked response still pushes
  // (TOP=7) and ST(0) holds the QNaN indefinite.
  EXPECT_EQ(fsw & (kFswIe | kFswSf | kFswC1), kFswIe | kFswSf | kFswC1);
  EXPECT_EQ((fsw >> 11) & 7, 7u);
  EXPECT_EQ(m.read<uint64_t>(0x101010), 0xc000000000000000ull);  // QNaN indefinite
  EXPECT_EQ(m.read<uint16_t>(0x101018), 0xffffu);
}

HV_EMU_SNIPPET(x87_stack_underflow, R"(
  fninit
  fadd st(0), st(1)
  fnstsw ax
  fistp dword ptr [rdi]
  hlt
)")

TEST(EmuFpu, StackUnderflowRaisesInvalidWithC1Clear) {
  TestMachine m;
  m.load_code(x87_stack_underflow());
  m.cpu().gpr[7] = 0x101000;
  m.write_value<uint32_t>(0x101000, 0x12345678);
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  const uint16_t fsw = static_cast<uint16_t>(m.cpu().gpr[0]);
  EXPECT_EQ(fsw & (kFswIe | kFswSf | kFswC1), kFswIe | kFswSf);  // C1=0: underflow
  // The masked response stored the indefinite into ST(0); FISTP of it gives the integer indefinite.
  EXPECT_EQ(m.read<uint32_t>(0x101000), 0x80000000u);
}

HV_EMU_SNIPPET(x87_unmasked_zero_divide, R"(
  fninit
  fldcw word ptr [rsi]
  fldz
  fld1
  fdiv st(0), st(1)
  mov eax, 1
fault_here:
  fwait
  hlt
)")

TEST(EmuFpu, UnmaskedExceptionRaisesMfAtTheNextWaitingInstruction) {
  TestMachine m;
  m.load_code(x87_unmasked_zero_divide());
  m.cpu().gpr[6] = 0x100000;
  m.write_value<uint16_t>(0x100000, 0x037b);  // ZE unmasked
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), kMf);
  // Delivered at FWAIT (after the MOV that followed the faulting FDIV), which has not run.
  const uint64_t fwait_rip = TestMachine::kCode + x87_unmasked_zero_divide().size() - 2;
  EXPECT_EQ(m.read<uint64_t>(m.cpu().gpr[4]), fwait_rip);
  EXPECT_EQ(m.cpu().gpr[0], 1u);
  const X87State& x = m.cpu().x87;
  EXPECT_EQ(x.fsw & (kFswZe | kFswEs | kFswB), kFswZe | kFswEs | kFswB);
  // The unmasked response leaves the destination unchanged (1.0) and records FIP/FOP of FDIV.
  EXPECT_EQ(x.st[x87_top(x)][7], 0x80);
  EXPECT_EQ(x.st[x87_top(x)][9], 0x3f);
  EXPECT_EQ(x.fop, 0x0f1u);  // D8 F1: fdiv st(0), st(1)
  EXPECT_EQ(x.fip, fwait_rip - 2 - 5);

  // With CR0.NE=0 the exception is not delivered (no FERR# line): the code runs to its end.
  TestMachine legacy;
  legacy.load_code(x87_unmasked_zero_divide());
  legacy.cpu().gpr[6] = 0x100000;
  legacy.write_value<uint16_t>(0x100000, 0x037b);
  legacy.cpu().cr0 &= ~(1ull << 5);
  ASSERT_EQ(legacy.run().stop, Stop::kHalt);
  EXPECT_EQ(legacy.vector_taken(), -1);
  EXPECT_TRUE(legacy.cpu().x87.fsw & kFswEs);
}

HV_EMU_SNIPPET(x87_save_restore, R"(
  fninit
  fldpi
  fld qword ptr [rsi]
  fld1
  fchs
  fldcw word ptr [rsi + 8]
  fnsave [rdi]
  fnstcw word ptr [rdi + 200]
  fnstsw word ptr [rdi + 202]
  frstor [rdi]
  fstp tbyte ptr [rdi + 128]
  fstp qword ptr [rdi + 144]
  fstp tbyte ptr [rdi + 160]
  fnstcw word ptr [rdi + 204]
  .byte 0x66
  fnsave [rdi + 256]
  .byte 0x66
  frstor [rdi + 256]
  fnstsw word ptr [rdi + 206]
  hlt
)")

TEST(EmuFpu, FnsaveFrstorRoundTrip) {
  TestMachine m;
  m.load_code(x87_save_restore());
  m.cpu().gpr[6] = 0x100000;
  m.cpu().gpr[7] = 0x101000;
  m.write_value<double>(0x100000, 2.5);
  m.write_value<uint16_t>(0x100008, 0x0c7f);  // round toward zero, 24-bit precision
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  // The 108-byte image: control word, TOP=5, three valid registers, ST(0) = -1.0.
  EXPECT_EQ(m.read<uint16_t>(0x101000), 0x0c7fu);
  EXPECT_EQ((m.read<uint16_t>(0x101004) >> 11) & 7, 5u);
  EXPECT_EQ(m.read<uint16_t>(0x101008), 0x03ffu);  // R0-R4 empty (11), R5-R7 valid (00)
  EXPECT_EQ(m.read<uint64_t>(0x101000 + 28), 0x8000000000000000ull);
  EXPECT_EQ(m.read<uint16_t>(0x101000 + 36), 0xbfffu);
  // FNSAVE reinitialised the FPU.
  EXPECT_EQ(m.read<uint16_t>(0x101000 + 200), 0x037fu);
  EXPECT_EQ(m.read<uint16_t>(0x101000 + 202), 0x0000u);
  // FRSTOR brought back the stack and the control word.
  EXPECT_EQ(m.read<uint64_t>(0x101000 + 128), 0x8000000000000000ull);
  EXPECT_EQ(m.read<uint16_t>(0x101000 + 136), 0xbfffu);
  EXPECT_EQ(m.read<double>(0x101000 + 144), 2.5);
  EXPECT_EQ(m.read<uint16_t>(0x101000 + 168), 0x4000u);  // pi: exponent of 2^1
  EXPECT_EQ(m.read<uint16_t>(0x101000 + 204), 0x0c7fu);
  // The 94-byte (16-bit) layout round-trips too: TOP is back to 0 after the three pops.
  EXPECT_EQ(m.read<uint16_t>(0x101000 + 256), 0x0c7fu);
  EXPECT_EQ((m.read<uint16_t>(0x101000 + 206) >> 11) & 7, 0u);
}

HV_EMU_SNIPPET(sse_unmasked_divide, R"(
  ldmxcsr dword ptr [rsi]
  movsd xmm0, qword ptr [rsi + 8]
  xorpd xmm1, xmm1
  movapd xmm2, xmm0
  divsd xmm2, xmm1
  hlt
)")

TEST(EmuFpu, UnmaskedSimdExceptionRaisesXmOrUd) {
  for (bool osxmmexcpt : {true, false}) {
    TestMachine m;
    m.load_code(sse_unmasked_divide());
    m.cpu().gpr[6] = 0x100000;
    m.write_value<uint32_t>(0x100000, 0x1f80 & ~(1u << 9));  // ZM clear
    m.write_value<double>(0x100008, 3.0);
    if (!osxmmexcpt) m.cpu().cr4 &= ~(1ull << 10);
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    EXPECT_EQ(m.vector_taken(), osxmmexcpt ? kXm : kUd);
    EXPECT_EQ(m.cpu().mxcsr & 0x3f, 1u << 2);  // ZE flagged
    double x2;
    std::memcpy(&x2, m.cpu().xmm[2], 8);
    EXPECT_EQ(x2, 3.0);  // the destination is unchanged
  }
  // Masked: the result is +inf and ZE is sticky.
  TestMachine masked;
  masked.load_code(sse_unmasked_divide());
  masked.cpu().gpr[6] = 0x100000;
  masked.write_value<uint32_t>(0x100000, 0x1f80);
  masked.write_value<double>(0x100008, 3.0);
  ASSERT_EQ(masked.run().stop, Stop::kHalt);
  EXPECT_EQ(masked.vector_taken(), -1);
  EXPECT_EQ(masked.cpu().mxcsr, 0x1f84u);
  double x2;
  std::memcpy(&x2, masked.cpu().xmm[2], 8);
  EXPECT_TRUE(std::isinf(x2));
}

HV_EMU_SNIPPET(x87_real_mode_environment, R"(
.code16
  fninit
  fld1
  fld qword ptr [0x300]
  fnstenv [0x200]
  .byte 0x66
  fnstenv [0x220]
  fldenv [0x200]
  fnstenv [0x240]
  hlt
.code64
)")

// The real-mode environment layouts hold linear instruction/data pointers and the opcode.
TEST(EmuFpu, RealModeEnvironmentLayouts) {
  TestMachine m;
  m.load_code(x87_real_mode_environment(), 0x8000);
  m.enter_real_mode(0x8000);
  m.write_value<double>(0x300, 0.25);
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  ASSERT_EQ(m.vector_taken(), -1);
  // 14 bytes: FCW, FSW (TOP=6), tags, IP 15:0, IP 19:16 | opcode, DP 15:0, DP 19:16.
  EXPECT_EQ(m.read<uint16_t>(0x200), 0x037fu);  // FNSTENV masks afterwards, but stores first
  EXPECT_EQ((m.read<uint16_t>(0x202) >> 11) & 7, 6u);
  EXPECT_EQ(m.read<uint16_t>(0x204), 0x0fffu);  // R6 valid (00), R7 valid (00), others empty
  EXPECT_EQ(m.read<uint16_t>(0x206), 0x8004u);  // FLD m64 at 0000:8004
  EXPECT_EQ(m.read<uint16_t>(0x208), 0x0506u);  // DD 06: opcode 101 00000110
  EXPECT_EQ(m.read<uint16_t>(0x20a), 0x0300u);
  EXPECT_EQ(m.read<uint16_t>(0x20c), 0x0000u);
  // 28 bytes: the same fields in doublewords.
  EXPECT_EQ(m.read<uint16_t>(0x220 + 12), 0x8004u);
  EXPECT_EQ(m.read<uint32_t>(0x220 + 16), 0x0506u);
  EXPECT_EQ(m.read<uint16_t>(0x220 + 20), 0x0300u);
  EXPECT_EQ(m.read<uint32_t>(0x220 + 24), 0u);
  // FLDENV of the first image and FNSTENV again reproduce it (the control word as stored).
  for (unsigned off = 0; off < 14; off += 2) {
    EXPECT_EQ(m.read<uint16_t>(0x240 + off), m.read<uint16_t>(0x200 + off)) << "offset " << off;
  }
}

HV_EMU_SNIPPET(sse_exact_tiny_product, R"(
  ldmxcsr dword ptr [rsi]
  movsd xmm0, qword ptr [rsi + 8]
  mulsd xmm0, qword ptr [rsi + 16]
  hlt
)")

// 2^-1000 * 2^-70 = 2^-1070 is a denormal but exact: masked, nothing is
// flagged; with underflow unmasked, tininess alone is an underflow (#XM).
TEST(EmuFpu, ExactTinyResultUnderflowsOnlyWhenUnmasked) {
  for (bool unmasked : {false, true}) {
    TestMachine m;
    m.load_code(sse_exact_tiny_product());
    m.cpu().gpr[6] = 0x100000;
    m.write_value<uint32_t>(0x100000, unmasked ? 0x1f80 & ~(1u << 11) : 0x1f80);
    m.write_value<double>(0x100008, std::ldexp(1.0, -1000));
    m.write_value<double>(0x100010, std::ldexp(1.0, -70));
    ASSERT_EQ(m.run().stop, Stop::kHalt);
    double x0;
    std::memcpy(&x0, m.cpu().xmm[0], 8);
    if (unmasked) {
      EXPECT_EQ(m.vector_taken(), kXm);
      EXPECT_EQ(m.cpu().mxcsr & 0x3f, 1u << 4);  // UE only: the result is exact
      EXPECT_EQ(x0, std::ldexp(1.0, -1000));     // destination unchanged
    } else {
      EXPECT_EQ(m.vector_taken(), -1);
      EXPECT_EQ(m.cpu().mxcsr & 0x3f, 0u);
      EXPECT_EQ(x0, std::ldexp(1.0, -1070));
    }
  }
}

HV_EMU_SNIPPET(x87_fwait_then_fld1, R"(
  fwait
  mov eax, 1
  fld1
  hlt
)")

// CR0.EM: x87 instructions raise #NM (software FP emulation); FWAIT does not
// (it faults only with MP and TS both set).
TEST(EmuFpu, EmulationBitMakesX87RaiseNm) {
  TestMachine m;
  m.load_code(x87_fwait_then_fld1());
  m.cpu().cr0 |= 1ull << 2;
  ASSERT_EQ(m.run().stop, Stop::kHalt);
  EXPECT_EQ(m.vector_taken(), kNm);
  EXPECT_EQ(m.cpu().gpr[0], 1u);  // FWAIT and the MOV ran

  TestMachine mp_ts;
  mp_ts.load_code(x87_fwait_then_fld1());
  mp_ts.cpu().cr0 |= (1ull << 1) | (1ull << 3);
  ASSERT_EQ(mp_ts.run().stop, Stop::kHalt);
  EXPECT_EQ(mp_ts.vector_taken(), kNm);
  EXPECT_EQ(mp_ts.cpu().gpr[0], 0u);  // FWAIT faulted
}

HV_EMU_SNIPPET(mmx_paddb_only, R"(
  paddb mm0, mm1
  hlt
)")

TEST(EmuFpu, MmxChecksEmTsAndPendingX87Exceptions) {
  TestMachine em;
  em.load_code(mmx_paddb_only());
  em.cpu().cr0 |= 1ull << 2;
  ASSERT_EQ(em.run().stop, Stop::kHalt);
  EXPECT_EQ(em.vector_taken(), kUd);

  TestMachine ts;
  ts.load_code(mmx_paddb_only());
  ts.cpu().cr0 |= 1ull << 3;
  ASSERT_EQ(ts.run().stop, Stop::kHalt);
  EXPECT_EQ(ts.vector_taken(), kNm);

  TestMachine pending;
  pending.load_code(mmx_paddb_only());
  pending.cpu().x87.fcw = 0x037e;  // IE unmasked
  pending.cpu().x87.fsw = kFswIe | kFswEs | kFswB;
  ASSERT_EQ(pending.run().stop, Stop::kHalt);
  EXPECT_EQ(pending.vector_taken(), kMf);

  // Executed: TOP becomes 0, every register is tagged valid and MM0's exponent is all ones.
  TestMachine ok;
  ok.load_code(mmx_paddb_only());
  x87_set_top(ok.cpu().x87, 3);
  ok.cpu().x87.ftw = 0x01;
  ASSERT_EQ(ok.run().stop, Stop::kHalt);
  EXPECT_EQ(ok.vector_taken(), -1);
  EXPECT_EQ(x87_top(ok.cpu().x87), 0u);
  EXPECT_EQ(ok.cpu().x87.ftw, 0xff);
  EXPECT_EQ(ok.cpu().x87.st[0][8], 0xff);
  EXPECT_EQ(ok.cpu().x87.st[0][9], 0xff);
}

// Every escape-opcode encoding the decoder accepts runs on the emulated CPU
// without hurting the host (the host FPU executes most of them), from a
// state with a full stack, NaNs and unmasked exceptions.
TEST(EmuFpu, EveryX87EncodingIsSafe) {
  Decoder decoder;
  unsigned host_executed = 0;
  for (unsigned opcode = 0xd8; opcode <= 0xdf; ++opcode) {
    for (unsigned modrm = 0; modrm < 256; ++modrm) {
      if (modrm < 0xc0 && (modrm & 7) != 6) continue;  // memory forms: one addressing mode, [rsi]
      const uint8_t code[] = {static_cast<uint8_t>(opcode), static_cast<uint8_t>(modrm), 0xf4};
      Insn insn;
      if (decoder.decode(code, sizeof(code), 8, false, insn) != Decoder::Status::kOk) continue;
      if (insn.fn == h_x87) ++host_executed;
      for (uint16_t fcw : {uint16_t{0x037f}, uint16_t{0x0f40}}) {
        TestMachine m;
        m.load_code(code);
        m.cpu().gpr[6] = 0x100000;
        m.cpu().x87.fcw = fcw;
        m.cpu().x87.ftw = static_cast<uint8_t>(modrm * 37);
        for (unsigned r = 0; r < 8; ++r) {
          const uint64_t mantissa = 0xc000000000000000ull >> (r & 1);
          std::memcpy(m.cpu().x87.st[r], &mantissa, 8);
          m.cpu().x87.st[r][9] = r < 4 ? 0x7f : 0x3f;
          m.cpu().x87.st[r][8] = 0xff;
        }
        const auto out = m.run(10);
        EXPECT_NE(out.stop, Stop::kFailure) << std::hex << opcode << " " << modrm << ": " << out.detail;
      }
    }
  }
  EXPECT_GT(host_executed, 400u);
}

}  // namespace
}  // namespace hostvisor::emu
