// The translating tier against the interpreter (the reference): the same
// guest code runs on two TestMachines, one with a Translator, and the whole
// architectural state, memory, the fault and the instruction count must
// agree. Also the code cache's W^X mapping, its bound and its flush, the
// kick in a tight translated loop, and self-modifying code in the running
// block.
#include "hv/emu/jit/translator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "hv/emu/code_map.h"
#include "hv/emu/flags.h"
#include "hv/emu/jit/code_cache.h"
#include "hv/emu/jit/tier_options.h"
#include "hv/emu/leave_word.h"
#include "hv/emu/platform/apic_bus.h"
#include "hv/emu/platform/local_apic.h"
#include "hv/emu/platform/platform_clock.h"
#include "hv/emu/platform/platform_timers.h"
#include "hv/emu/testing/snippet.h"
#include "hv/emu/testing/test_machine.h"

namespace hostvisor::emu::jit {
namespace {

using emu::testing::TestMachine;
using Stop = Interpreter::Stop;

// ---- The code cache ----

// The permissions of the mappings of the memfd named `name` in this process.
std::vector<std::string> mapping_permissions(const std::string& name) {
  std::vector<std::string> perms;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) perms.push_back(line.substr(line.find(' ') + 1, 4));
  }
  return perms;
}

TEST(CodeCache, TwoViewsOfOneMemfdNeverWritableAndExecutable) {
  auto cache = CodeCache::create(CodeCache::kMinBytes);
  ASSERT_TRUE(cache.ok()) << cache.error().message();
  const auto perms = mapping_permissions("hostvisor-emu-code");
  ASSERT_EQ(perms.size(), 2u);
  bool writable = false, executable = false;
  for (const std::string& p : perms) {
    EXPECT_FALSE(p[1] == 'w' && p[2] == 'x') << p;
    writable |= p[1] == 'w';
    executable |= p[2] == 'x';
  }
  EXPECT_TRUE(writable);
  EXPECT_TRUE(executable);
}

TEST(CodeCache, RunsWhatWasWrittenThroughTheOtherView) {
  auto cache = CodeCache::create(CodeCache::kMinBytes);
  ASSERT_TRUE(cache.ok());
  const uint8_t code[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};  // mov eax, 42; ret
  const uint8_t* entry = (*cache)->add(code);
  ASSERT_NE(entry, nullptr);
  EXPECT_TRUE((*cache)->contains(entry));
  EXPECT_EQ(reinterpret_cast<int (*)()>(const_cast<uint8_t*>(entry))(), 42);
}

TEST(CodeCache, IsBoundedAndFlushStartsOver) {
  auto cache = CodeCache::create(CodeCache::kMinBytes);
  ASSERT_TRUE(cache.ok());
  CodeCache& c = **cache;
  const std::vector<uint8_t> chunk(1000, 0xc3);
  size_t added = 0;
  while (c.add(chunk)) ++added;
  EXPECT_EQ(added, c.capacity() / 1008);  // 16-byte aligned chunks
  EXPECT_LE(c.used(), c.capacity());
  EXPECT_EQ(c.generation(), 0u);
  c.flush();
  EXPECT_EQ(c.generation(), 1u);
  EXPECT_EQ(c.used(), 0u);
  EXPECT_NE(c.add(chunk), nullptr);
}

TEST(CodeCache, RejectsSizesOutsideItsBounds) {
  EXPECT_FALSE(CodeCache::create(CodeCache::kMinBytes - 1).ok());
  EXPECT_FALSE(CodeCache::create(CodeCache::kMaxBytes + 1).ok());
}

TEST(TierOptions, ParsesTheTierAndTheCacheSize) {
  EXPECT_EQ(*parse_tier("interp"), Tier::kInterp);
  EXPECT_EQ(*parse_tier("jit"), Tier::kJit);
  auto bad = parse_tier("tcg");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("interp or jit"), std::string::npos);
  EXPECT_EQ(*parse_code_cache_size("32M"), 32u << 20);
  EXPECT_FALSE(parse_code_cache_size("4K").ok());
  EXPECT_FALSE(parse_code_cache_size("2G").ok());
  EXPECT_FALSE(parse_code_cache_size("lots").ok());
  // The command line's values are checked the same way (only failures here:
  // a success would set the tier for every later test in this process).
  auto tier = set_process_tier_options("tcg", "");
  ASSERT_FALSE(tier.ok());
  EXPECT_NE(tier.error().message().find("--emu-tier"), std::string::npos);
  auto size = set_process_tier_options("jit", "2G");
  ASSERT_FALSE(size.ok());
  EXPECT_NE(size.error().message().find("--emu-code-cache"), std::string::npos);
}

// ---- The translator against the interpreter ----

// The six register-only instructions the differential programs use, each
// with its encoding (all translatable).
const std::vector<std::vector<uint8_t>> kAluOps = {
    {0x48, 0x01, 0xd0},              // add rax, rdx
    {0x48, 0x31, 0xc6},              // xor rsi, rax
    {0x48, 0xc1, 0xe2, 0x05},        // shl rdx, 5
    {0x4c, 0x8d, 0x44, 0xb0, 0x09},  // lea r8, [rax + rsi*4 + 9]
    {0x49, 0xff, 0xc1},              // inc r9
    {0x49, 0x29, 0xf2},              // sub r10, rsi
};

class TranslatorVsInterpreter : public ::testing::Test {
 public:
  void SetUp() override {
    reference_ = std::make_unique<TestMachine>();
    translated_ = std::make_unique<TestMachine>();
    auto t = Translator::create(1 << 20);
    ASSERT_TRUE(t.ok()) << t.error().message();
    translated().interpreter().set_translator(std::move(*t));
  }
  TestMachine& reference() { return *reference_; }
  TestMachine& translated() { return *translated_; }

  const TranslatorStats stats() { return translated().interpreter().translator()->stats(); }

  template <typename F>
  void on_both(F&& f) {
    f(reference());
    f(translated());
  }

  void load(std::span<const uint8_t> code) {
    on_both([&](TestMachine& m) { m.load_code(code); });
  }

  // The translated run stopped on a #PF at `address` (and the reference
  // with it: run_and_compare).
  void expect_page_fault_at(uint64_t address) {
    EXPECT_EQ(translated().vector_taken(), kPf);
    EXPECT_EQ(translated().cpu().cr2, address);
  }

  // Runs both to a stop and compares everything the guest can see.
  void run_and_compare(uint64_t limit = 1'000'000) {
    const auto a = reference().run(limit);
    const auto b = translated().run(limit);
    EXPECT_EQ(a.stop, b.stop) << a.detail << " / " << b.detail;
    const Cpu& x = reference().cpu();
    const Cpu& y = translated().cpu();
    for (unsigned r = 0; r < 16; ++r) EXPECT_EQ(x.gpr[r], y.gpr[r]) << "GPR " << r;
    EXPECT_EQ(x.rip, y.rip);
    // AF after logic instructions and shifts and OF after multi-bit shifts
    // are undefined: the host CPU and the reference may differ there, as two
    // CPU models do. The others are defined for every instruction used.
    constexpr uint64_t kDefined = kFlagCf | kFlagPf | kFlagZf | kFlagSf;
    EXPECT_EQ(read_flags(x) & kDefined, read_flags(y) & kDefined);
    EXPECT_EQ(read_flags(x) & ~kArithFlags, read_flags(y) & ~kArithFlags);
    EXPECT_EQ(x.cr2, y.cr2);
    EXPECT_EQ(reference().vector_taken(), translated().vector_taken());
    EXPECT_EQ(reference().interpreter().instructions(), translated().interpreter().instructions());
    // An exception frame (on the stack, or in the data pages when the
    // stack was there) holds RFLAGS: the same flags compare there.
    const int vector = reference().vector_taken();
    const bool error_code = vector == kDf || (vector >= kTs && vector <= kPf) || vector == kAc;
    const uint64_t flags_slot = vector < 0 ? 0 : x.gpr[4] + (error_code ? 24 : 16);
    for (uint64_t a = TestMachine::kData; a < TestMachine::kData + 0x2000; a += 8) {
      const uint64_t mask = a == flags_slot ? ~kArithFlags | kDefined : ~0ull;
      ASSERT_EQ(reference().read<uint64_t>(a) & mask, translated().read<uint64_t>(a) & mask) << "memory at " << a;
    }
    for (uint64_t a = TestMachine::kStackTop - 0x100; a < TestMachine::kStackTop; a += 8) {
      const uint64_t mask = a == flags_slot ? ~kArithFlags | kDefined : ~0ull;
      ASSERT_EQ(reference().read<uint64_t>(a) & mask, translated().read<uint64_t>(a) & mask) << "stack at " << a;
    }
  }

  std::unique_ptr<TestMachine> reference_, translated_;
};

// mov ecx, 40; top: <body>; dec ecx; jnz top; hlt
std::vector<uint8_t> counted_loop(const std::vector<uint8_t>& body) {
  std::vector<uint8_t> code = {0xb9, 40, 0, 0, 0};
  code.insert(code.end(), body.begin(), body.end());
  code.insert(code.end(), {0xff, 0xc9, 0x75});  // dec ecx; jnz rel8
  code.push_back(static_cast<uint8_t>(-static_cast<int>(body.size() + 4)));
  code.push_back(0xf4);
  return code;
}

void set_inputs(TestMachine& m) {
  Cpu& c = m.cpu();
  c.gpr[0] = 0x0123456789abcdefull;
  c.gpr[2] = 0xfedcba9876543210ull;
  c.gpr[6] = 0x8000000000000001ull;
  c.gpr[9] = 0x7ffffffffffffffeull;
  c.gpr[10] = 5;
}

TEST_F(TranslatorVsInterpreter, RegisterAluLoopAgrees) {
  std::vector<uint8_t> body;
  for (const auto& op : kAluOps) body.insert(body.end(), op.begin(), op.end());
  load(counted_loop(body));
  on_both(set_inputs);
  run_and_compare();
  EXPECT_EQ(translated().cpu().rip, TestMachine::kCode + counted_loop(body).size());  // past the final HLT
  EXPECT_GE(stats().blocks_translated, 1u);
  // The first iteration is part of the block at the start (with MOV ECX);
  // the loop's own block is entered 39 times and from its hot entry on runs
  // the six instructions, DEC and JNZ natively: the first time from the run
  // loop, then its taken exit is chained to itself.
  EXPECT_EQ(stats().native_insns, 8u * (39 - Translator::kHotUses + 1));
  EXPECT_EQ(stats().chains_made, 1u);
  EXPECT_EQ(stats().chained_entries, 39 - Translator::kHotUses - 1);
  // Its memory besides the code cache: the jump cache and the one chained
  // exit at least; three decoded blocks (the start, the loop, the HLT).
  const TranslatorStats s = translated().interpreter().translator_stats();
  EXPECT_GE(s.metadata_bytes, 2 * kJumpCacheSize * sizeof(JumpCacheEntry) + sizeof(uint8_t*));
  EXPECT_EQ(s.blocks, 3u);
  EXPECT_EQ(s.blocks_peak, 3u);
  EXPECT_NE(describe(s).find("metadata " + std::to_string(s.metadata_bytes) + " bytes plus " +
                             std::to_string(kBlockFieldBytes) + " per block (3 blocks"),
            std::string::npos)
      << describe(s);
}

// A store that faults on its first access to a non-present page, after k
// register instructions (k = 0..6; translated from kMinInsns on) of a hot
// block: registers, flags, RIP, CR2, the exception and the instruction
// count are the interpreter's.
TEST_F(TranslatorVsInterpreter, FaultAfterEachPrefixLengthIsExact) {
  constexpr uint64_t kMissing = TestMachine::kData + 0x1000;
  for (size_t k = 0; k <= kAluOps.size(); ++k) {
    SCOPED_TRACE("translated prefix of " + std::to_string(k));
    SetUp();
    std::vector<uint8_t> body;
    for (size_t i = 0; i < kAluOps.size(); ++i) {
      if (i == k) body.insert(body.end(), {0x48, 0x89, 0x03});  // mov [rbx], rax
      body.insert(body.end(), kAluOps[i].begin(), kAluOps[i].end());
    }
    if (k == kAluOps.size()) body.insert(body.end(), {0x48, 0x89, 0x03});
    body.insert(body.end(), {0x48, 0x83, 0xc3, 0x08});  // add rbx, 8
    load(counted_loop(body));
    on_both([&](TestMachine& m) {
      set_inputs(m);
      m.cpu().gpr[3] = kMissing - 8 * 30;  // the 31st store faults
      m.set_pte(kMissing, 0);
    });
    run_and_compare();
    expect_page_fault_at(kMissing);
    // Shorter prefixes are left to the interpreter (Translator::kMinInsns);
    // the comparison holds for them too.
    if (k >= Translator::kMinInsns) EXPECT_GT(stats().native_insns, 0u);
  }
}

// The block writes its own first instruction's immediate (ADD RAX, 1 -> 5)
// once it is hot and translated: from then on both tiers add 5.
HV_EMU_SNIPPET(smc_in_running_block, R"(
  mov ecx, 40
hv_jit_smc_top:
  add rax, 1
  cmp ecx, 20
  mov rbx, r13
  cmove rbx, r12
  mov [rbx], dl
  dec ecx
  jnz hv_jit_smc_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, SelfModifyingCodeInTheRunningBlock) {
  load(smc_in_running_block());
  on_both([](TestMachine& m) {
    Cpu& c = m.cpu();
    c.gpr[0] = 0;
    c.gpr[2] = 5;                            // DL: the new immediate
    c.gpr[12] = TestMachine::kCode + 5 + 3;  // the ADD's immediate byte
    c.gpr[13] = TestMachine::kData;          // a harmless target before that
  });
  run_and_compare();
  // 21 iterations (ECX 40..20) add 1, the write lands in the one with ECX 20, 19 add 5.
  EXPECT_EQ(translated().cpu().gpr[0], 21u * 1 + 19u * 5);
  EXPECT_GE(stats().blocks_translated, 1u);
}

// Every memory form the inline soft-TLB check takes: loads, stores and
// read-modify-writes through a register, the guest's RSP, RIP-relative and
// GS-relative operands, byte forms with a high-byte register, MOVZX.
HV_EMU_SNIPPET(memory_loop, R"(
  mov ecx, 60
hv_jit_memory_top:
  mov rax, [rbx]
  add rax, [rbx + rsi*8 + 8]
  mov [rbx + 16], rax
  add [rbx + 24], rcx
  xor rdx, [rsp + 8]
  mov r8, [rip + hv_jit_memory_top]
  add r9, gs:[8]
  mov [rbx + 32], ah
  movzx r10d, byte ptr [rbx + 17]
  inc qword ptr [rbx + 40]
  cmp rax, [rbx]
  mov r14, [r12 + r11*8 - 0x100]
  add [r11*4 + 0x100200], r9d
  mov [rbx + rsi*2 + 0x7f0], ah
  sub word ptr [r12 + 6], r9w
  add r14, [r12 + r11]
  dec ecx
  jnz hv_jit_memory_top
  hlt
)")

// Runs memory_loop() on both machines and compares: every form of memory
// operand through the soft-TLB check.
void run_memory_loop(TranslatorVsInterpreter& t);

TEST_F(TranslatorVsInterpreter, MemoryOperandsRunNativelyAndAgree) { run_memory_loop(*this); }

// The check's other forms: the TLB index without BMI2's RORX, and the
// mirror (tlb_mirror.h) outside the low 2 GiB, named through the Cpu.
TEST_F(TranslatorVsInterpreter, MemoryOperandsAgreeWithoutBmi2) {
  auto t = Translator::create(1 << 20);
  ASSERT_TRUE(t.ok());
  (*t)->use_bmi2(false);
  translated().interpreter().set_translator(std::move(*t));
  run_memory_loop(*this);
}

TEST_F(TranslatorVsInterpreter, MemoryOperandsAgreeWithTheTlbMirrorAboveTwoGigabytes) {
  const TlbMirror* mirror = translated().cpu().tlb.mirror.attach(false);
  ASSERT_GE(reinterpret_cast<uintptr_t>(mirror), 0x80000000ull);
  run_memory_loop(*this);
}

void run_memory_loop(TranslatorVsInterpreter& t) {
  t.load(memory_loop());
  t.on_both([](TestMachine& m) {
    set_inputs(m);
    Cpu& c = m.cpu();
    c.gpr[3] = TestMachine::kData + 0x100;
    c.gpr[6] = 2;
    c.gpr[4] = TestMachine::kStackTop - 64;
    c.seg[kGs].base = TestMachine::kData + 0x800;
    c.gpr[11] = 4;
    c.gpr[12] = TestMachine::kData + 0x400;
    m.write_value<uint64_t>(TestMachine::kData + 0x320, 0x4444);
    m.write_value<uint64_t>(TestMachine::kData + 0x100, 0x1111);
    m.write_value<uint64_t>(TestMachine::kData + 0x100 + 24, 0x3333);
    m.write_value<uint64_t>(TestMachine::kStackTop - 64 + 8, 0xabcdef);
    m.write_value<uint64_t>(TestMachine::kData + 0x808, 0x77);
  });
  t.run_and_compare();
  EXPECT_EQ(t.translated().vector_taken(), -1);
  // The loop's block (16 instructions and DEC) runs natively from its hot
  // entry on, the checks hitting once the interpreter's first iterations
  // filled the TLB.
  EXPECT_GE(t.stats().native_insns, 17u * (59 - Translator::kHotUses));
  EXPECT_EQ(t.stats().side_exits, 0u);
}

// A soft-TLB miss inside a translated block is refilled out of line and
// the access runs natively: INVLPG (interpreted) drops the page every
// iteration, so each native run of the block misses on its load and on its
// read-modify-write, refills both (read and write entries) and leaves no
// side exit; the result is the interpreter's.
TEST_F(TranslatorVsInterpreter, SoftTlbMissesAreRefilledInTranslatedCode) {
  load(counted_loop({
      0x48, 0x03, 0x03,        // add rax, [rbx]
      0x48, 0x01, 0x43, 0x08,  // add [rbx + 8], rax
      0x48, 0x31, 0xc6,        // xor rsi, rax
      0x0f, 0x01, 0x3b,        // invlpg [rbx]
  }));
  on_both([](TestMachine& m) {
    set_inputs(m);
    m.cpu().gpr[3] = TestMachine::kData + 0x100;
    m.write_value<uint64_t>(TestMachine::kData + 0x100, 0x1234);
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_GE(stats().tlb_refills, 2u * (39 - Translator::kHotUses));
  EXPECT_EQ(stats().tlb_refill_failures, 0u);
  EXPECT_EQ(stats().side_exits, 0u);
}

// BT/BTS/BTR/BTC (register and memory with an immediate offset) and BSWAP
// run as themselves: CF feeds an ADC each time, and the memory operand's
// bit is flipped in place, as the interpreter does.
TEST_F(TranslatorVsInterpreter, BitTestsAndByteSwapAgree) {
  load(counted_loop({
      0x48, 0x0f, 0xa3, 0xd0,        // bt rax, rdx
      0x48, 0x83, 0xd6, 0x00,        // adc rsi, 0
      0x48, 0x0f, 0xba, 0xeb, 0x05,  // bts rbx, 5
      0x49, 0x0f, 0xba, 0xf2, 0x01,  // btr r10, 1
      0x49, 0x0f, 0xba, 0x3b, 0x07,  // btc qword [r11], 7
      0x49, 0x0f, 0xba, 0x23, 0x03,  // bt qword [r11], 3
      0x48, 0x83, 0xd6, 0x00,        // adc rsi, 0
      0x49, 0x0f, 0xc9,              // bswap r9
      0x48, 0x01, 0xf0,              // add rax, rsi
  }));
  on_both([](TestMachine& m) {
    set_inputs(m);
    m.cpu().gpr[11] = TestMachine::kData + 0x100;
    m.write_value<uint64_t>(TestMachine::kData + 0x100, 0x5a5a);
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_GE(stats().native_insns, 11u * (39 - Translator::kHotUses));
  EXPECT_EQ(stats().side_exits, 0u);
}

// A chained successor rewritten: the loop's head block and its successor
// (ADD RBX, 1) chain to each other in one page; in the iteration with ECX
// 20 the head falls into a store of DL over the successor's immediate
// (through the interpreter: code pages never have a write TLB entry), which
// undoes the chains, and from then on both tiers add 5.
HV_EMU_SNIPPET(smc_in_chained_successor, R"(
  mov ecx, 40
hv_jit_smc2_top:
  add rax, rcx
  xor rsi, rax
  cmp ecx, 20
  jne hv_jit_smc2_successor
  mov [r12], dl
hv_jit_smc2_successor:
  add rbx, 1
  dec ecx
  jnz hv_jit_smc2_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, SelfModifyingCodeInAChainedSuccessor) {
  const auto code = smc_in_chained_successor();
  const uint8_t add_rbx_1[] = {0x48, 0x83, 0xc3, 0x01};
  const auto at = std::search(code.begin(), code.end(), std::begin(add_rbx_1), std::end(add_rbx_1));
  ASSERT_NE(at, code.end());
  const uint64_t immediate = TestMachine::kCode + static_cast<uint64_t>(at - code.begin()) + 3;
  load(code);
  on_both([&](TestMachine& m) {
    Cpu& c = m.cpu();
    c.gpr[3] = 0;
    c.gpr[2] = 5;  // DL: the new immediate
    c.gpr[12] = immediate;
  });
  run_and_compare();
  // ECX 40..21 add 1; at 20 the store comes first, so 20..1 add 5.
  EXPECT_EQ(translated().cpu().gpr[3], 20u * 1 + 20u * 5);
  // The store made the whole page stale, the chained blocks with it: both
  // are decoded and translated again and chain anew (the old chains are
  // never entered again).
  EXPECT_GE(stats().chains_made, 2u);
  EXPECT_GT(stats().chained_entries, 0u);
}

// SMC in a callee on another page, reached through the jump cache: the
// jump cache entry still leads to the callee's old translation after the
// store, whose chained entry finds its page's generation moved and goes
// back to the run loop, which decodes the page again and undoes the chains.
HV_EMU_SNIPPET(smc_across_pages, R"(
  mov ecx, 40
hv_jit_xsmc_top:
  add rax, rcx
  cmp ecx, 20
  jne hv_jit_xsmc_call
  mov [r12], dl
hv_jit_xsmc_call:
  call hv_jit_xsmc_fn
  dec ecx
  jnz hv_jit_xsmc_top
  hlt
  .skip 0x1000 - (. - hv_emu_snippet_smc_across_pages_begin)
hv_jit_xsmc_fn:
  add rbx, 1
  xor rsi, rbx
  ret
)")

TEST_F(TranslatorVsInterpreter, SelfModifyingCodeInACalleeOnAnotherPageReachedThroughTheJumpCache) {
  const auto code = smc_across_pages();
  const uint8_t add_rbx_1[] = {0x48, 0x83, 0xc3, 0x01};
  const auto at = std::search(code.begin(), code.end(), std::begin(add_rbx_1), std::end(add_rbx_1));
  ASSERT_NE(at, code.end());
  ASSERT_GE(at - code.begin(), 0x1000);  // the callee is on the next page
  const uint64_t immediate = TestMachine::kCode + static_cast<uint64_t>(at - code.begin()) + 3;
  load(code);
  on_both([&](TestMachine& m) {
    Cpu& c = m.cpu();
    c.gpr[3] = 0;
    c.gpr[2] = 5;  // DL: the new immediate
    c.gpr[12] = immediate;
  });
  run_and_compare();
  // ECX 40..21 add 1; at 20 the store comes first, so 20..1 add 5.
  EXPECT_EQ(translated().cpu().gpr[3], 20u * 1 + 20u * 5);
  EXPECT_GT(stats().jump_hits, 0u);
  EXPECT_GE(stats().unchains, 1u);
}

// PUSH/POP of registers and immediates, CALL rel32, RET and RET imm16:
// the loop's blocks, the callees and the return sites all translated,
// the returns going on through the jump cache once it is filled.
HV_EMU_SNIPPET(stack_loop, R"(
  mov ecx, 60
hv_jit_stack_top:
  push rax
  push 7
  pop rdx
  pop rbx
  add rax, rdx
  call hv_jit_stack_fn
  add rsi, rax
  push rcx
  call hv_jit_stack_fn8
  xor r9, rdi
  dec ecx
  jnz hv_jit_stack_top
  hlt
hv_jit_stack_fn:
  push rbx
  mov rbx, rax
  xor rdi, rbx
  pop rbx
  ret
hv_jit_stack_fn8:
  push r12
  mov r12, [rsp + 16]
  add rdi, r12
  pop r12
  ret 8
)")

TEST_F(TranslatorVsInterpreter, StackOperationsCallsAndReturnsAgree) {
  load(stack_loop());
  on_both([](TestMachine& m) {
    set_inputs(m);
    m.cpu().gpr[4] = TestMachine::kStackTop - 64;
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_EQ(translated().cpu().gpr[4], TestMachine::kStackTop - 64);
  EXPECT_GT(stats().native_insns, 12u * (60 - Translator::kHotUses));
  EXPECT_GT(stats().jump_hits, 2u * (60 - Translator::kHotUses - 4));
  EXPECT_EQ(stats().side_exits, 0u);
}

// Three blocks chained one after another (JMPs within the page), every
// register but RSP live through all of them, the CF of a CMP in the first
// read by an ADC in the second (the flags cross a chained entry), and a
// store in the third that faults in the 31st iteration: the side exit at
// the end of a chain of three leaves registers, flags, RIP, CR2 and the
// count exactly as the interpreter does.
HV_EMU_SNIPPET(chain_side_exit, R"(
  mov ecx, 40
hv_jit_chain_a:
  add rax, rdx
  mov r8, rax
  xor r11, r8
  cmp r9, r10
  jmp hv_jit_chain_b
hv_jit_chain_b:
  adc r12, r13
  lea r14, [r12 + r15*2]
  inc rbp
  jmp hv_jit_chain_c
hv_jit_chain_c:
  bswap rsi
  add rdi, rsi
  mov [rbx], r14
  add rbx, 8
  dec ecx
  jnz hv_jit_chain_a
  hlt
)")

void set_all_registers(TestMachine& m) {
  Cpu& c = m.cpu();
  for (unsigned r = 0; r < 16; ++r)
    if (r != 4) c.gpr[r] = 0x9e3779b97f4a7c15ull * (r + 1) ^ (uint64_t{r} << 56);
}

TEST_F(TranslatorVsInterpreter, SideExitAtTheEndOfAChainIsExact) {
  constexpr uint64_t kMissing = TestMachine::kData + 0x1000;
  load(chain_side_exit());
  on_both([&](TestMachine& m) {
    set_all_registers(m);
    m.cpu().gpr[3] = kMissing - 8 * 30;    // the 31st store faults
    m.cpu().gpr[10] = m.cpu().gpr[9] + 1;  // CF=1 from the CMP
    m.set_pte(kMissing, 0);
  });
  run_and_compare();
  expect_page_fault_at(kMissing);
  EXPECT_GT(stats().chained_entries, 20u);
  EXPECT_EQ(stats().side_exits, 1u);
}

// The chain budget and count live in XMM15 and every chained entry takes
// its block's instructions from it (one PADDQ), side exits and bails give
// back what did not run (the refill routine, a call into C++ that may
// clobber XMM registers, keeps it: SoftTlbMissesAreRefilledInTranslatedCode
// compares the count across refills). A loop of one- to three-instruction
// blocks (the crc benchmark's bit loop: one chain entry per 2 instructions)
// and a load, stopped by the instruction limit at every point of an
// iteration, early (the first translations) and past the 16,384-instruction
// chain budget: the same registers, flags, RIP and instruction count as the
// interpreter.
HV_EMU_SNIPPET(small_blocks_loop, R"(
  mov ecx, 1000
hv_jit_small_top:
  movzx r9d, byte ptr [rbx + r8]
  xor eax, r9d
  add r8d, 331
  and r8d, 8191
  mov r10d, 8
hv_jit_small_bit:
  shr eax, 1
  jc hv_jit_small_odd
  jmp hv_jit_small_next
hv_jit_small_odd:
  xor eax, edx
hv_jit_small_next:
  dec r10d
  jnz hv_jit_small_bit
  dec ecx
  jnz hv_jit_small_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, ChainOfSmallBlocksStopsExactlyAtEveryLimit) {
  for (uint64_t base : {uint64_t{3000}, uint64_t{20000}}) {
    for (uint64_t k = 0; k < 47; ++k) {
      SetUp();
      load(small_blocks_loop());
      on_both([](TestMachine& m) {
        set_all_registers(m);
        m.cpu().gpr[3] = TestMachine::kData;
        m.cpu().gpr[8] = 0;
        m.cpu().gpr[2] = 0xedb88320;
      });
      run_and_compare(base + k);
      // The interpreter stops at the first block boundary at or past the limit.
      ASSERT_GE(reference().interpreter().instructions(), base + k) << "limit " << base + k;
      ASSERT_LT(reference().interpreter().instructions(), base + k + 8) << "limit " << base + k;
      ASSERT_GT(stats().chained_entries, base / 8) << "limit " << base + k;
      if (HasFailure()) return;
    }
  }
}

// A call and a return through the jump cache with every register but RSP
// live across them and flags set by the callee (a CMP before the RET) read
// after the return (ADC): what a jump cache hit enters with is exactly
// what the block before it left.
HV_EMU_SNIPPET(registers_across_return, R"(
  mov ecx, 40
hv_jit_across_top:
  add r8, r9
  cmp r10, r11
  call hv_jit_across_fn
  adc r12, rbx
  add rbp, r12
  dec ecx
  jnz hv_jit_across_top
  hlt
hv_jit_across_fn:
  add r13, rcx
  xor r14, r13
  lea r15, [r14 + rdi]
  add rsi, rdx
  cmp rsi, r15
  ret
)")

TEST_F(TranslatorVsInterpreter, RegistersAndFlagsHeldAcrossAJumpCacheHit) {
  load(registers_across_return());
  on_both([](TestMachine& m) {
    set_all_registers(m);
    m.cpu().gpr[4] = TestMachine::kStackTop - 64;
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_GT(stats().jump_hits, 40u - Translator::kHotUses - 4);
  EXPECT_GT(stats().chained_entries, 0u);
  EXPECT_EQ(stats().side_exits, 0u);
}

// A stack access that faults, at every position of a hot translated block:
// a PUSH walking down into a missing page (its #PF frame faults too: #DF)
// and a POP walking up into one. Registers, flags, RIP, CR2, the exception
// and the count are the interpreter's.
TEST_F(TranslatorVsInterpreter, StackFaultAtEachPositionIsExact) {
  constexpr uint64_t kMissing = TestMachine::kData + 0x1000;
  for (const bool push : {true, false}) {
    for (size_t k = 0; k <= kAluOps.size(); ++k) {
      SCOPED_TRACE(std::string(push ? "push" : "pop") + " at " + std::to_string(k));
      SetUp();
      const std::vector<uint8_t> stack_op = push ? std::vector<uint8_t>{0x50} : std::vector<uint8_t>{0x41, 0x5b};
      std::vector<uint8_t> body;
      for (size_t i = 0; i < kAluOps.size(); ++i) {
        if (i == k) body.insert(body.end(), stack_op.begin(), stack_op.end());
        body.insert(body.end(), kAluOps[i].begin(), kAluOps[i].end());
      }
      if (k == kAluOps.size()) body.insert(body.end(), stack_op.begin(), stack_op.end());
      load(counted_loop(body));
      on_both([&](TestMachine& m) {
        set_inputs(m);
        // The 31st access is the first in the missing page.
        m.cpu().gpr[4] = push ? kMissing + 0x1000 + 8 * 30 : kMissing - 8 * 30;
        m.set_pte(kMissing, 0);
      });
      run_and_compare();
      EXPECT_EQ(translated().cpu().cr2, push ? kMissing + 0xff8 : kMissing);
      if (k >= Translator::kMinInsns) EXPECT_GT(stats().native_insns, 0u);
      EXPECT_GT(stats().side_exits, 0u);
    }
  }
}

// A RET whose return address the callee overwrote (once, with ECX 10): the
// jump cache holds the usual return site, and the RET must go where the
// stack says, in both tiers.
HV_EMU_SNIPPET(overwritten_return, R"(
  lea rdx, [rip + hv_jit_ret_elsewhere]
  mov ecx, 40
hv_jit_ret_top:
  call hv_jit_ret_fn
hv_jit_ret_back:
  add rbx, 1
  dec ecx
  jnz hv_jit_ret_top
  hlt
hv_jit_ret_fn:
  add rax, rcx
  cmp ecx, 10
  jne hv_jit_ret_fn_end
  mov [rsp], rdx
hv_jit_ret_fn_end:
  ret
hv_jit_ret_elsewhere:
  add rsi, 100
  jmp hv_jit_ret_back
)")

TEST_F(TranslatorVsInterpreter, ReturnToAnOverwrittenAddressLeavesTheJumpCache) {
  load(overwritten_return());
  on_both([](TestMachine& m) {
    Cpu& c = m.cpu();
    c.gpr[0] = c.gpr[3] = c.gpr[6] = 0;
    c.gpr[4] = TestMachine::kStackTop - 64;
  });
  run_and_compare();
  EXPECT_EQ(translated().cpu().gpr[6], 100u);
  EXPECT_EQ(translated().cpu().gpr[3], 40u);
  EXPECT_GT(stats().jump_hits, 10u);
  EXPECT_GT(stats().jump_misses, 0u);
}

// A RET to 0xffffffffffffffff (canonical) from translated code, with the
// fetch TLB mapping that last page to guest-physical page 0: an empty jump
// cache entry must never match it (its RIP and physical page once were ~0
// and 0, and a hit jumped to a null chain entry), so the RET goes to the
// run loop and the HLT there runs, as in the interpreter.
HV_EMU_SNIPPET(return_to_the_last_byte, R"(
  lea rax, [rip + hv_jit_wrap_back]
  mov rdx, 0xfffffffffffff800
  jmp rdx
hv_jit_wrap_back:
  mov ecx, 40
  mov rdx, -1
hv_jit_wrap_top:
  call hv_jit_wrap_fn
  dec ecx
  jnz hv_jit_wrap_top
  hlt
hv_jit_wrap_fn:
  add rbx, 1
  cmp ecx, 1
  mov rdi, [rsp]
  cmove rdi, rdx
  mov [rsp], rdi
  ret
)")

TEST_F(TranslatorVsInterpreter, ReturnToTheLastCanonicalByteNeverTakesAnEmptyJumpCacheEntry) {
  load(return_to_the_last_byte());
  on_both([](TestMachine& m) {
    // Linear 0xfffffffffffff000 -> guest-physical page 0: JMP RAX at its
    // 0x800 (back to the loop), HLT at its last byte.
    constexpr uint64_t kTables = 0x3f0000;
    m.write_value<uint64_t>(TestMachine::kPml4 + 511 * 8, kTables | 3);
    m.write_value<uint64_t>(kTables + 511 * 8, (kTables + 0x1000) | 3);
    m.write_value<uint64_t>(kTables + 0x1000 + 511 * 8, (kTables + 0x2000) | 3);
    m.write_value<uint64_t>(kTables + 0x2000 + 511 * 8, 0 | 3);
    const uint8_t jmp_rax[] = {0xff, 0xe0}, hlt[] = {0xf4};
    m.write(0x800, jmp_rax);
    m.write(0xfff, hlt);
    Cpu& c = m.cpu();
    c.gpr[3] = 0;
    c.gpr[4] = TestMachine::kStackTop - 64;
  });
  run_and_compare();
  EXPECT_EQ(translated().cpu().gpr[3], 40u);
  EXPECT_EQ(translated().cpu().gpr[1], 1u);  // the last RET went to the HLT, not back into the loop
  EXPECT_GT(stats().jump_hits, 10u);
}

// A RET imm16 and a JMP r64 in translated code whose target is not
// canonical (once, with ECX 3): its check is on the jump cache's miss
// path, which must leave before the branch (#GP, RSP and RIP the
// branch's) exactly as the interpreter faults.
HV_EMU_SNIPPET(noncanonical_return, R"(
  mov ecx, 40
  mov rdx, 0x0000800000000000
hv_jit_nc_top:
  push rax
  push rax
  call hv_jit_nc_fn
  dec ecx
  jnz hv_jit_nc_top
  hlt
hv_jit_nc_fn:
  add rbx, 1
  cmp ecx, 3
  mov rdi, [rsp]
  cmove rdi, rdx
  mov [rsp], rdi
  ret 16
)")
HV_EMU_SNIPPET(noncanonical_jump, R"(
  mov ecx, 40
  mov rdx, 0x0000800000000000
  lea rsi, [rip + hv_jit_ncj_back]
hv_jit_ncj_top:
  mov rdi, rsi
  add rbx, 1
  cmp ecx, 3
  cmove rdi, rdx
  jmp rdi
hv_jit_ncj_back:
  dec ecx
  jnz hv_jit_ncj_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, NonCanonicalReturnOrJumpTargetFaultsBeforeTheBranch) {
  for (const bool ret : {true, false}) {
    SCOPED_TRACE(ret ? "ret 16" : "jmp rdi");
    SetUp();
    load(ret ? noncanonical_return() : noncanonical_jump());
    on_both([](TestMachine& m) {
      Cpu& c = m.cpu();
      c.gpr[3] = 0;
      c.gpr[4] = TestMachine::kStackTop - 64;
    });
    run_and_compare();
    EXPECT_EQ(translated().vector_taken(), kGp);
    EXPECT_EQ(translated().cpu().gpr[3], 38u);
    EXPECT_GT(stats().jump_hits, 10u);
    EXPECT_GT(stats().side_exits, 0u) << describe(stats());
  }
}

// RSP as a register operand: a frame set up and torn down the way
// compilers do, on a scratch register holding the guest's RSP.
HV_EMU_SNIPPET(frame_loop, R"(
  mov ecx, 50
hv_jit_frame_top:
  push rbp
  mov rbp, rsp
  sub rsp, 0x28
  and rsp, -16
  mov [rsp + 8], rcx
  lea rax, [rsp + 8]
  add rdx, [rax]
  cmp rsp, rbp
  lea rsp, [rbp]
  pop rbp
  dec ecx
  jnz hv_jit_frame_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, RspOperandsAgree) {
  load(frame_loop());
  on_both([](TestMachine& m) {
    set_inputs(m);
    m.cpu().gpr[4] = TestMachine::kStackTop - 72;
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_EQ(translated().cpu().gpr[4], TestMachine::kStackTop - 72);
  EXPECT_GE(stats().native_insns, 12u * (49 - Translator::kHotUses));
}

HV_EMU_SNIPPET(tight_loop, R"(
hv_jit_tight_loop_top:
  inc rax
  add rbx, rax
  xor rcx, rbx
  jmp hv_jit_tight_loop_top
)")

// The kick is looked at on every block entry, translated or not.
TEST_F(TranslatorVsInterpreter, KickStopsATightTranslatedLoop) {
  translated().load_code(tight_loop());
  Interpreter& interp = translated().interpreter();
  std::thread kicker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    interp.kick();
  });
  const auto outcome = translated().run(UINT64_MAX);
  kicker.join();
  EXPECT_EQ(outcome.stop, Stop::kInterrupted);
  EXPECT_GT(stats().native_insns, 1000u);
  // RIP is on the loop's one block boundary, RAX counts its iterations.
  EXPECT_EQ(translated().cpu().rip, TestMachine::kCode);
  EXPECT_GT(translated().cpu().gpr[0], 0u);
}

// DIV and IDIV of 32 and 64 bits, register and memory divisors, run
// natively; the CF of a CMP before them feeds an ADC after them, so a
// translation that let the divide change the flags (the interpreter keeps
// them) would differ. The dividend and divisors change every iteration.
HV_EMU_SNIPPET(divide_loop, R"(
  mov ecx, 60
hv_jit_divide_top:
  mov rax, r8
  cqo
  cmp r12, r13
  idiv r9
  adc r14, 0
  add r10, rax
  add r11, rdx
  mov eax, r8d
  xor edx, edx
  cmp r12, r13
  div dword ptr [rbx]
  adc r14, 0
  add r10, rax
  mov rax, r8
  xor edx, edx
  div qword ptr [rbx + 8]
  add r11, rdx
  mov eax, r8d
  cdq
  idiv r9d
  add r10, rdx
  add r8, r10
  inc r9
  add qword ptr [rbx + 8], 3
  dec ecx
  jnz hv_jit_divide_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, DivideRunsNativelyKeepsTheFlagsAndAgrees) {
  load(divide_loop());
  on_both([](TestMachine& m) {
    set_inputs(m);
    Cpu& c = m.cpu();
    c.gpr[3] = TestMachine::kData + 0x100;
    c.gpr[8] = 0x123456789abcdefull;
    c.gpr[9] = 3;
    c.gpr[12] = 1;
    c.gpr[13] = 2;  // CMP sets CF every iteration
    c.gpr[14] = 0;
    m.write_value<uint32_t>(TestMachine::kData + 0x100, 1000);
    m.write_value<uint64_t>(TestMachine::kData + 0x108, 0x10001);
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_EQ(translated().cpu().gpr[14], 120u);  // CF survived every DIV
  EXPECT_GE(stats().native_insns, 25u * (59 - Translator::kHotUses));
  EXPECT_EQ(stats().side_exits, 0u);
}

// What would raise #DE never reaches the host's divide: the translation
// leaves before it and the interpreter raises the guest's #DE with the
// state, RIP and count it would have (a zero divisor, a DIV whose quotient
// does not fit); an IDIV by -1 and one of a dividend wider than RAX are
// the interpreter's too, and do not fault. `mode` picks the case.
HV_EMU_SNIPPET(divide_fault_loop, R"(
  mov ecx, 40
hv_jit_divide_fault_top:
  add rsi, rcx
  mov rax, r8
  mov rdx, r12
  div r9
  add r10, rax
  mov rax, rsi
  mov rdx, r13
  idiv r11
  add r10, rdx
  dec r9
  dec ecx
  jnz hv_jit_divide_fault_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, DivideFaultsAndOverflowsAreTheInterpreters) {
  struct Case {
    const char* name;
    uint64_t r9, r11, r12, r13;
    int vector;
  };
  const Case cases[] = {
      {"divisor reaches 0", 30, 3, 0, 0, kDe},                    // the 31st DIV divides by 0
      {"quotient overflows", 45, 3, 25, 0, kDe},                  // RDX 25 >= the divisor once R9 reaches 25
      {"IDIV by -1", 1000, static_cast<uint64_t>(-1), 0, 0, -1},  // exits to the interpreter, no fault
      {"IDIV of 128 bits", 1000, 1u << 20, 0, 5, -1},             // RDX not RAX's sign: the interpreter's
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SetUp();
    load(divide_fault_loop());
    on_both([&](TestMachine& m) {
      set_inputs(m);
      Cpu& cpu = m.cpu();
      cpu.gpr[6] = 0;
      cpu.gpr[8] = 0x0fedcba987654321ull;
      cpu.gpr[9] = c.r9;
      cpu.gpr[11] = c.r11;
      cpu.gpr[12] = c.r12;
      cpu.gpr[13] = c.r13;
    });
    run_and_compare();
    EXPECT_EQ(translated().vector_taken(), c.vector);
    EXPECT_GT(stats().native_insns, 0u);
  }
}

// PUSHFQ runs natively: the pushed RFLAGS carries the guest's arithmetic
// flags (all defined after ADD/SUB/CMP) and the rest of Cpu::rflags (DF
// set here, IF clear), VM and RF never; POP takes it into a register the
// loop sums, and the stack slot stays for the comparison.
HV_EMU_SNIPPET(pushf_loop, R"(
  mov ecx, 60
hv_jit_pushf_top:
  add rax, rdx
  pushfq
  pop rbx
  add rsi, rbx
  cmp rax, r8
  pushfq
  pop r9
  add r10, r9
  sub rdx, rcx
  pushfq
  add rsp, 8
  dec ecx
  jnz hv_jit_pushf_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, PushfqRunsNativelyAndAgrees) {
  load(pushf_loop());
  on_both([](TestMachine& m) {
    set_inputs(m);
    m.cpu().gpr[4] = TestMachine::kStackTop - 64;
    m.cpu().gpr[8] = 0x0123456789abcdefull;
    m.cpu().rflags |= kFlagDf | kFlagRf;
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  // The last PUSHFQ's slot (below RSP now): DF and the arithmetic flags, no RF.
  const uint64_t pushed = translated().read<uint64_t>(TestMachine::kStackTop - 72);
  EXPECT_EQ(pushed, reference().read<uint64_t>(TestMachine::kStackTop - 72));
  EXPECT_TRUE(pushed & kFlagDf);
  EXPECT_FALSE(pushed & kFlagRf);
  EXPECT_GE(stats().native_insns, 13u * (59 - Translator::kHotUses));
  EXPECT_EQ(stats().side_exits, 0u);
}

// A PUSHFQ walking down into a missing page, at every position of a hot
// block of instructions that define every flag: the #PF (and the #DF its
// frame raises) leaves RSP, the flags, RIP and the count as the
// interpreter does, and every pushed RFLAGS before it is the interpreter's.
TEST_F(TranslatorVsInterpreter, PushfqFaultAtEachPositionIsExact) {
  constexpr uint64_t kMissing = TestMachine::kData + 0x1000;
  const std::vector<std::vector<uint8_t>> ops = {
      {0x48, 0x01, 0xd0},              // add rax, rdx
      {0x49, 0x29, 0xf2},              // sub r10, rsi
      {0x4c, 0x8d, 0x44, 0xb0, 0x09},  // lea r8, [rax + rsi*4 + 9]
      {0x49, 0xff, 0xc1},              // inc r9
      {0x48, 0x83, 0xea, 0x05},        // sub rdx, 5
  };
  for (size_t k = 0; k <= ops.size(); ++k) {
    SCOPED_TRACE("pushfq at " + std::to_string(k));
    SetUp();
    std::vector<uint8_t> body;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (i == k) body.push_back(0x9c);
      body.insert(body.end(), ops[i].begin(), ops[i].end());
    }
    if (k == ops.size()) body.push_back(0x9c);
    load(counted_loop(body));
    on_both([&](TestMachine& m) {
      set_inputs(m);
      m.cpu().gpr[4] = kMissing + 0x1000 + 8 * 30;  // the 31st push is the first in the missing page
      m.set_pte(kMissing, 0);
    });
    run_and_compare();
    EXPECT_EQ(translated().cpu().cr2, kMissing + 0xff8);
    for (uint64_t a = kMissing + 0x1000; a < kMissing + 0x1000 + 8 * 30; a += 8)
      ASSERT_EQ(reference().read<uint64_t>(a), translated().read<uint64_t>(a)) << "pushed at " << a;
    if (k >= Translator::kMinInsns) EXPECT_GT(stats().native_insns, 0u);
    EXPECT_GT(stats().side_exits, 0u);
  }
}

// LOCK CMPXCHG (succeeding and failing), LOCK XADD, XCHG with memory (an
// implied LOCK) of 8, 4, 2 and 1 bytes, and the register forms, all aligned:
// host LOCK'd instructions on the host address, no side exit.
HV_EMU_SNIPPET(atomic_loop, R"(
  mov ecx, 60
hv_jit_atomic_top:
  mov rax, [rbx]
  lea rdx, [rax + 1]
  lock cmpxchg [rbx], rdx
  lock cmpxchg [rbx + 8], rsi
  lock xadd [rbx + 16], rbp
  lock xadd dword ptr [rbx + 24], r8d
  xchg [rbx + 32], r9
  lock cmpxchg word ptr [rbx + 40], r10w
  lock xadd byte ptr [rbx + 42], dl
  cmpxchg r11, r12
  xadd r13, r14
  cmpxchg qword ptr [rbx + 48], rdi
  add rsi, rax
  dec ecx
  jnz hv_jit_atomic_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, AtomicReadModifyWritesRunNativelyAndAgree) {
  load(atomic_loop());
  on_both([](TestMachine& m) {
    set_inputs(m);
    Cpu& c = m.cpu();
    c.gpr[3] = TestMachine::kData + 0x100;
    c.gpr[7] = 0x55;
    c.gpr[8] = 0x80000001;
    c.gpr[11] = 7;
    c.gpr[12] = 9;
    m.write_value<uint64_t>(TestMachine::kData + 0x100, 0x1000);
    m.write_value<uint64_t>(TestMachine::kData + 0x108, 0x1234);
    m.write_value<uint64_t>(TestMachine::kData + 0x128, 0xffff);
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_EQ(translated().read<uint64_t>(TestMachine::kData + 0x100), 0x1000u + 60);  // every CMPXCHG succeeded
  EXPECT_GE(stats().native_insns, 14u * (59 - Translator::kHotUses));
  EXPECT_EQ(stats().side_exits, 0u);
}

// A locked access that is not aligned never runs as a host LOCK'd
// instruction (it might split a cache line): the translation leaves before
// it and the interpreter's atomic path runs it, at every offset of an
// 8-byte operand around a cache line (the aligned ones stay native). And a
// LOCK CMPXCHG walking into a missing page faults as in the interpreter.
TEST_F(TranslatorVsInterpreter, MisalignedOrFaultingLockedAccessesAreTheInterpreters) {
  for (unsigned offset = 0; offset < 8; ++offset) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    SetUp();
    load(counted_loop({
        0x48, 0x01, 0xd0,              // add rax, rdx
        0xf0, 0x48, 0x0f, 0xc1, 0x33,  // lock xadd [rbx], rsi
        0x49, 0x29, 0xf2,              // sub r10, rsi
        0x48, 0x87, 0x4b, 0x08,        // xchg [rbx + 8], rcx
        0x49, 0xff, 0xc1,              // inc r9
    }));
    on_both([&](TestMachine& m) {
      set_inputs(m);
      m.cpu().gpr[3] = TestMachine::kData + 0x40 - 8 + offset;  // [rbx] up to the line, [rbx + 8] past it
    });
    run_and_compare();
    EXPECT_EQ(translated().vector_taken(), -1);
    EXPECT_GT(stats().native_insns, 0u);
    if (offset == 0) {
      EXPECT_EQ(stats().side_exits, 0u);
    } else {
      EXPECT_GE(stats().side_exits, 39u - Translator::kHotUses);
    }
  }
  SetUp();
  constexpr uint64_t kMissing = TestMachine::kData + 0x1000;
  load(counted_loop({
      0x48, 0x01, 0xd0,              // add rax, rdx
      0xf0, 0x48, 0x0f, 0xb1, 0x33,  // lock cmpxchg [rbx], rsi
      0x49, 0x29, 0xf2,              // sub r10, rsi
      0x48, 0x83, 0xc3, 0x08,        // add rbx, 8
  }));
  on_both([&](TestMachine& m) {
    set_inputs(m);
    m.cpu().gpr[3] = kMissing - 8 * 30;  // the 31st access faults
    m.set_pte(kMissing, 0);
  });
  run_and_compare();
  expect_page_fault_at(kMissing);
  EXPECT_GT(stats().native_insns, 0u);
}

// MOVS and STOS with and without REP, bytes to qwords, an overlapping
// forward copy and REP with RCX = 0: each ends its block, and runs as the
// host's own instruction when all its bytes lie within one page and DF is
// clear. With DF set (backwards) or a range crossing a page the
// translation leaves before it and the interpreter runs it; the state,
// memory and count agree either way.
HV_EMU_SNIPPET(string_loop, R"(
  mov r15d, 40
hv_jit_string_top:
  lea rdi, [rbx + 8]
  mov ecx, 30
  add rax, r15
  rep stosq
  lea rsi, [rbx + 8]
  lea rdi, [rbx + 0x403]
  mov ecx, 100
  rep movsb
  lea rsi, [rbx + 0x400]
  lea rdi, [rbx + 0x404]
  mov ecx, 50
  rep movsd
  mov rdi, r12
  add rax, 3
  stosw
  mov rsi, rbx
  lea rdi, [rbx + 0x600]
  movsq
  xor ecx, ecx
  lea rdi, [rbx + 0x700]
  rep stosb
  add r12, 2
  dec r15d
  jnz hv_jit_string_top
  hlt
)")

TEST_F(TranslatorVsInterpreter, StringMovesAndStoresAgree) {
  struct Case {
    const char* name;
    uint64_t rbx;
    bool df;
    bool native;  // every string instruction within one page, forwards
  };
  const Case cases[] = {
      {"within pages", TestMachine::kData + 0x800, false, true},
      {"DF set", TestMachine::kData + 0x800, true, false},
      {"crossing a page", TestMachine::kData + 0xf40, false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SetUp();
    load(string_loop());
    on_both([&](TestMachine& m) {
      set_inputs(m);
      Cpu& cpu = m.cpu();
      cpu.gpr[3] = c.rbx;
      cpu.gpr[12] = TestMachine::kData + 0x100;
      if (c.df) cpu.rflags |= kFlagDf;
      for (uint64_t a = 0; a < 0x2000; a += 8)
        m.write_value<uint64_t>(TestMachine::kData + a, a * 0x0101010101010101ull);
    });
    run_and_compare();
    EXPECT_EQ(translated().vector_taken(), -1);
    EXPECT_GT(stats().native_insns, 0u);
    if (c.native) {
      EXPECT_EQ(stats().side_exits, 0u);
      EXPECT_GE(stats().native_insns, 21u * (39 - Translator::kHotUses));
    } else {
      EXPECT_GT(stats().side_exits, 0u);
    }
  }
}

// A REP STOSQ walking into a missing page faults as in the interpreter:
// the translation's soft-TLB check misses, it leaves before the
// instruction, and the interpreter raises the #PF (RDI, RCX, CR2, the
// count); one starting in the page before and crossing into it is the
// interpreter's from the start (its iterations before the fault done).
TEST_F(TranslatorVsInterpreter, StringFaultsAreExact) {
  constexpr uint64_t kMissing = TestMachine::kData + 0x1000;
  for (const uint64_t start : {kMissing - 0x100 * 30, kMissing - 0x100 * 30 - 16}) {
    SCOPED_TRACE(start);
    SetUp();
    load(counted_loop({
        0x4c, 0x89, 0xe7,                          // mov rdi, r12
        0x49, 0x89, 0xcd,                          // mov r13, rcx
        0xb9, 4,    0,    0,    0,                 // mov ecx, 4
        0x48, 0x01, 0xd0,                          // add rax, rdx
        0xf3, 0x48, 0xab,                          // rep stosq
        0x4c, 0x89, 0xe9,                          // mov rcx, r13
        0x49, 0x81, 0xc4, 0x00, 0x01, 0x00, 0x00,  // add r12, 0x100
    }));
    on_both([&](TestMachine& m) {
      set_inputs(m);
      m.cpu().gpr[12] = start;
      m.set_pte(kMissing, 0);
    });
    run_and_compare();
    expect_page_fault_at(kMissing);
    EXPECT_GT(stats().native_insns, 0u);
  }
}

// CLI and STI at CPL 0 end their blocks and run natively (IF in the Cpu),
// PUSHFQ after each seeing the IF they left; the states agree.
HV_EMU_SNIPPET(cli_sti_loop, R"(
  mov ecx, 40
hv_jit_cli_sti_top:
  add rax, rdx
  pushfq
  pop rbx
  cli
  add rsi, rbx
  sub rdx, rcx
  pushfq
  pop r8
  sti
  add r9, r8
  add r10, rbx
  dec ecx
  jnz hv_jit_cli_sti_top
  cli
  hlt
)")

TEST_F(TranslatorVsInterpreter, CliAndStiRunNativelyAndAgree) {
  load(cli_sti_loop());
  on_both([](TestMachine& m) {
    set_inputs(m);
    m.cpu().gpr[4] = TestMachine::kStackTop - 64;
  });
  run_and_compare();
  EXPECT_EQ(translated().vector_taken(), -1);
  EXPECT_FALSE(translated().cpu().rflags & kFlagIf);
  EXPECT_GE(stats().native_insns, 12u * (39 - Translator::kHotUses));
  EXPECT_EQ(stats().side_exits, 0u);
}

HV_EMU_SNIPPET(counting_loop, R"(
hv_jit_counting_loop_top:
  inc qword ptr [rbx]
  jmp hv_jit_counting_loop_top
)")

// A bootstrap LAPIC in x2APIC mode, software-enabled (SVR 0x1ff), alone
// on its bus and on a clock that never moves by itself.
struct EnabledX2apic {
  ManualClock clock{0};
  PlatformTimers timers{clock};
  ApicBus bus;
  LocalApic lapic{0, true, bus, timers};
  bool enabled = false;
  EnabledX2apic() {
    bus.add(lapic);
    const uint64_t base = LocalApic::kDefaultBase | LocalApic::kApicBaseBsp | LocalApic::kApicBaseEnable;
    enabled = lapic.msr_write(LocalApic::kMsrApicBase, base | LocalApic::kApicBaseX2apic).ok() &&
              lapic.msr_write(LocalApic::kMsrX2apicFirst + LocalApic::kRegSvr / 16, 0x1ff).ok();
  }
};

// An interrupt another thread sends to the LAPIC while the vCPU runs a
// tight loop that is translated and chained to itself: each chained entry
// looks at the LAPIC's attention flag, so the interrupt is taken within a
// few iterations of its arrival, through the IDT, at the loop's block
// boundary, well before the chain's instruction budget (16384) would have
// sent the vCPU back to the run loop anyway.
TEST(TranslatedLoop, TakesAnInterruptThatArrivesWhileItRuns) {
  constexpr uint8_t kVector = 0x50;
  constexpr uint64_t kCounter = TestMachine::kData;
  EnabledX2apic apic;
  ASSERT_TRUE(apic.enabled);
  LocalApic& lapic = apic.lapic;
  TestMachine m;
  auto t = Translator::create(1 << 20);
  ASSERT_TRUE(t.ok()) << t.error().message();
  m.interpreter().set_translator(std::move(*t));
  m.cpu().lapic = &lapic;
  m.cpu().rflags |= kFlagIf;
  m.cpu().gpr[3] = kCounter;
  m.load_code(counting_loop());
  uint64_t count_at_arrival = 0;
  std::thread sender([&] {
    // Until the loop is hot, translated and has chained for a while.
    while (m.read<uint64_t>(kCounter) < 1'000'000) std::this_thread::yield();
    ApicMessage message;
    message.vector = kVector;
    lapic.accept(message);
    // Read after the interrupt is pending: whatever the vCPU counted
    // from here on, it counted after the interrupt arrived.
    count_at_arrival = m.read<uint64_t>(kCounter);
  });
  const auto outcome = m.run(2'000'000'000);
  sender.join();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << "the interrupt was never taken: " << outcome.detail;
  EXPECT_EQ(m.vector_taken(), kVector);
  EXPECT_EQ(m.read<uint64_t>(m.cpu().gpr[4]), TestMachine::kCode);  // the interrupted RIP: the loop's start
  const Translator& translator = *m.interpreter().translator();
  EXPECT_GT(translator.stats().chained_entries, 100'000u);
  const uint64_t after_arrival = m.read<uint64_t>(kCounter) - count_at_arrival;
  EXPECT_LT(after_arrival, 1000u) << "iterations run after the interrupt arrived";
}

HV_EMU_SNIPPET(racing_divide_loop, R"(
hv_jit_racing_divide_top:
  mov eax, 1000
  xor edx, edx
  div qword ptr [rbx]
  inc qword ptr [rcx]
  jmp hv_jit_racing_divide_top
)")

// Another vCPU (here a host thread) stores 0 and 1 into a DIV's memory
// divisor as fast as it can while the divide runs translated. The checks
// see 1 and pass, then the store lands: a divide that read memory again
// would divide by 0 on the host, whose SIGFPE ends the process (this test
// binary). The translation divides by the copy it checked, so the guest
// only ever takes its own #DE, when the check reads the 0.
TEST(TranslatedDivide, AZeroStoredBetweenTheCheckAndTheDivideNeverReachesTheHost) {
  constexpr uint64_t kDivisor = TestMachine::kData, kCounter = TestMachine::kData + 64;
  TestMachine m;
  auto t = Translator::create(1 << 20);
  ASSERT_TRUE(t.ok()) << t.error().message();
  m.interpreter().set_translator(std::move(*t));
  const std::span<const uint8_t> code = racing_divide_loop();
  auto* divisor = reinterpret_cast<uint64_t*>(m.memory().host_pointer(GuestAddress(kDivisor), 8));
  ASSERT_NE(divisor, nullptr);
  std::atomic_ref<uint64_t>(*divisor).store(1);
  std::atomic<bool> racing{true};
  std::thread writer([&] {
    std::atomic_ref<uint64_t> value(*divisor);
    while (racing.load(std::memory_order_relaxed)) {
      value.store(0, std::memory_order_relaxed);
      value.store(1, std::memory_order_relaxed);
    }
  });
  unsigned guest_faults = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    m.load_code(code);  // RIP back to the loop; its translation stays cached
    m.cpu().gpr[3] = kDivisor;
    m.cpu().gpr[1] = kCounter;
    m.cpu().gpr[4] = TestMachine::kStackTop;
    const auto outcome = m.run(1'000'000);
    if (outcome.stop == Stop::kHalt && m.vector_taken() == 0) ++guest_faults;
  }
  racing = false;
  writer.join();
  EXPECT_GT(guest_faults, 0u) << "the guest never saw its zero divisor";
  EXPECT_GT(m.interpreter().translator()->stats().native_insns, 1000u) << "the divide never ran translated";
}

HV_EMU_SNIPPET(store_after_go, R"(
hv_jit_store_after_go_wait:
  inc qword ptr [rdx]
  mov rax, qword ptr [rdx]
  sub rax, qword ptr [rcx]
  shr rax, 63
  xor rax, 1
  mov qword ptr [rbx], rax
  test rax, rax
  jz hv_jit_store_after_go_wait
  hlt
)")

// Cross-modifying code: this vCPU spins in a chained translated loop that
// counts its iterations and stores into a page, data so far (so its write
// TLB entry skips the code-page check), 0 until its count reaches "go",
// then 1. Another vCPU (here a host thread) decodes code from that page,
// which marks it code, reads the count and sets "go" two past it. The store
// of 1 must invalidate what the other vCPU decoded; went it through the old
// fast entry, the other vCPU would run the stale code for ever. Chained
// translations look at the code map's epoch at each block entry, as the run
// loop does between blocks, and go back to it to drop the write entries.
// The 1 is stored in an iteration entered after the mark, so this holds
// however the threads interleave (an iteration already running when the
// epoch moves may still miss it: see the chain entry in translator.cpp);
// without the check the chain would run on for up to 16,384 instructions,
// some 2,000 iterations.
TEST(TranslatedLoop, StoreIntoAPageAnotherVcpuJustMadeCodeInvalidatesIt) {
  constexpr uint64_t kGo = TestMachine::kData, kIterations = TestMachine::kData + 64;
  constexpr uint64_t kPage = TestMachine::kData + 0x1000;
  TestMachine m;
  auto t = Translator::create(1 << 20);
  ASSERT_TRUE(t.ok()) << t.error().message();
  m.interpreter().set_translator(std::move(*t));
  m.load_code(store_after_go());
  m.cpu().gpr[3] = kPage;
  m.cpu().gpr[1] = kGo;
  m.cpu().gpr[2] = kIterations;
  m.write_value<uint64_t>(kGo, uint64_t{1} << 62);
  uint32_t generation_when_marked = 0;
  std::thread other_vcpu([&] {
    // Until the loop is hot, translated and has chained for a while.
    while (m.read<uint64_t>(kIterations) < 1'000'000) std::this_thread::yield();
    m.code_map().mark_code(kPage);  // what decoding a block from the page does
    generation_when_marked = m.code_map().generation(kPage);
    m.write_value<uint64_t>(kGo, m.read<uint64_t>(kIterations) + 2);
  });
  const auto outcome = m.run(4'000'000'000);
  other_vcpu.join();
  ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
  EXPECT_EQ(m.read<uint64_t>(kPage), 1u);
  EXPECT_GT(m.interpreter().translator()->stats().chained_entries, 1000u) << "the wait loop never chained";
  EXPECT_NE(m.code_map().generation(kPage), generation_when_marked)
      << "the store went through a write entry made while the page was data: the other vCPU's code stays stale";
  EXPECT_FALSE(m.code_map().is_code(kPage));
}

// A hot translated block ending in STI opens the interrupt window exactly
// where the interpreter does: the loop sends itself an interrupt (x2APIC
// self IPI) with IF clear once its blocks are translated; the STI that
// follows sets IF with a one-instruction shadow, so the interrupt is taken
// after the INC right after STI, never later (a chained exit would have
// run the rest of the next block first).
HV_EMU_SNIPPET(sti_window_loop, R"(
  mov r15d, 40
hv_jit_sti_window_top:
  cli
  cmp r15d, 20
  jne hv_jit_sti_window_skip
  mov ecx, 0x830
  mov eax, 0x40040
  xor edx, edx
  wrmsr
hv_jit_sti_window_skip:
  add rax, rdx
  sub rsi, rax
  inc r13
  sti
hv_jit_sti_window_shadowed:
  inc r11
hv_jit_sti_window_after:
  inc r12
  dec r15d
  jnz hv_jit_sti_window_top
  cli
  hlt
)")

HV_EMU_SNIPPET(sti_window_handler, R"(
  mov r9, [rsp]
  mov [r10], r9
  add r10, 8
  mov [r10], r12
  add r10, 8
  mov ecx, 0x80b
  xor eax, eax
  xor edx, edx
  wrmsr
  iretq
)")

TEST(TranslatedLoop, StiOpensTheInterruptWindowAfterExactlyOneInstruction) {
  constexpr uint8_t kVector = 0x40;
  constexpr uint64_t kHandler = 0x20000, kLog = TestMachine::kData;
  EnabledX2apic apic;
  ASSERT_TRUE(apic.enabled);
  LocalApic& lapic = apic.lapic;
  for (const bool jit : {false, true}) {
    SCOPED_TRACE(jit ? "translated" : "interpreted");
    TestMachine m;
    if (jit) {
      auto t = Translator::create(1 << 20);
      ASSERT_TRUE(t.ok()) << t.error().message();
      m.interpreter().set_translator(std::move(*t));
    } else {
      m.interpreter().set_translator(nullptr);
    }
    m.cpu().lapic = &lapic;
    m.write(kHandler, sti_window_handler());
    const uint64_t gate = (kHandler & 0xffff) | (static_cast<uint64_t>(TestMachine::kCode64) << 16) | (0xeull << 40) |
                          (1ull << 47) | ((kHandler >> 16) << 48);
    m.write_value<uint64_t>(TestMachine::kIdt + kVector * 16, gate);
    m.write_value<uint64_t>(TestMachine::kIdt + kVector * 16 + 8, 0);
    m.cpu().gpr[10] = kLog;
    m.load_code(sti_window_loop());
    const auto outcome = m.run(1'000'000);
    ASSERT_EQ(outcome.stop, Stop::kHalt) << outcome.detail;
    ASSERT_EQ(m.cpu().gpr[10], kLog + 16) << "one interrupt taken";
    // The interrupted RIP: the INC after the shadowed one, R12 not yet incremented that iteration.
    const auto code = sti_window_loop();
    const uint64_t after = TestMachine::kCode + code.size() - 10;  // inc r12 (3), dec r15d (3), jnz (2), cli, hlt
    EXPECT_EQ(m.read<uint64_t>(kLog), after);
    EXPECT_EQ(m.read<uint64_t>(kLog + 8), 40u - 20u);  // R12 then: the iterations before
    EXPECT_EQ(m.cpu().gpr[11], 40u);
    if (jit) EXPECT_GT(m.interpreter().translator()->stats().native_insns, 0u);
  }
}

// ---- The leave word ----

// Words come from the low 2 GiB (translated code names them as absolute
// 32-bit addresses), a cache line each, cleared when handed out, and a
// released one is handed out again.
TEST(LeaveWord, LowDistinctClearedAndReused) {
  std::atomic<uint32_t>* a = acquire_leave_word();
  std::atomic<uint32_t>* b = acquire_leave_word();
  ASSERT_NE(a, b);
  EXPECT_TRUE(absolute32(a));
  EXPECT_TRUE(absolute32(b));
  const auto distance = reinterpret_cast<intptr_t>(b) - reinterpret_cast<intptr_t>(a);
  EXPECT_GE(distance < 0 ? -distance : distance, 64);
  a->store(1);
  release_leave_word(a);
  std::atomic<uint32_t>* c = acquire_leave_word();
  EXPECT_EQ(c, a);
  EXPECT_EQ(c->load(), 0u);
  release_leave_word(b);
  release_leave_word(c);
}

// A page that becomes code (the epoch moves) sets every added vCPU's leave
// word; a page already code does not; a word is added once however often
// its vCPU's run loop adds it.
TEST(LeaveWord, SetByTheCodeMapWhenAPageBecomesCode) {
  CodeMap map(1 << 20);
  std::atomic<uint32_t>* a = acquire_leave_word();
  std::atomic<uint32_t>* b = acquire_leave_word();
  ASSERT_TRUE(map.add_leave_word(a));
  ASSERT_TRUE(map.add_leave_word(a));
  ASSERT_TRUE(map.add_leave_word(b));
  map.mark_code(0x3000);
  EXPECT_EQ(a->load(), 1u);
  EXPECT_EQ(b->load(), 1u);
  a->store(0);
  b->store(0);
  map.mark_code(0x3000);  // already code: no new epoch
  EXPECT_EQ(a->load(), 0u);
  map.invalidate(0x3000);  // written: data again
  map.mark_code(0x3000);
  EXPECT_EQ(a->load(), 1u);
  EXPECT_EQ(b->load(), 1u);
  // The generation words are in the low 2 GiB too: a chain entry compares
  // its page's at an absolute address.
  EXPECT_TRUE(absolute32(map.generation_word(0x3000)));
  release_leave_word(a);
  release_leave_word(b);
}

// The LAPIC sets the word when it comes to need attention (an interrupt
// accepted), and at once when it already does as the word is given.
TEST(LeaveWord, SetByTheLapicWhenItNeedsAttention) {
  EnabledX2apic apic;
  ASSERT_TRUE(apic.enabled);
  LocalApic& lapic = apic.lapic;
  std::atomic<uint32_t>* word = acquire_leave_word();
  lapic.set_attention_poke(word);
  EXPECT_EQ(word->load(), 0u);
  ApicMessage message;
  message.vector = 0x50;
  lapic.accept(message);
  ASSERT_TRUE(lapic.needs_attention());
  EXPECT_EQ(word->load(), 1u);
  std::atomic<uint32_t>* other = acquire_leave_word();
  lapic.set_attention_poke(other);
  EXPECT_EQ(other->load(), 1u);
  lapic.set_attention_poke(nullptr);
  release_leave_word(word);
  release_leave_word(other);
}

TEST(Translatable, TakesRegisterAluAndRefusesTheRest) {
  Decoder decoder;
  auto decode = [&](std::initializer_list<uint8_t> bytes) {
    Insn insn;
    std::vector<uint8_t> b(bytes);
    decoder.decode(b.data(), b.size(), 8, false, insn);
    return insn;
  };
  EXPECT_TRUE(translatable(decode({0x48, 0x01, 0xd0})));               // add rax, rdx
  EXPECT_TRUE(translatable(decode({0x4c, 0x8d, 0x44, 0xb0, 0x09})));   // lea r8, [rax + rsi*4 + 9]
  EXPECT_TRUE(translatable(decode({0x88, 0xe0})));                     // mov al, ah
  EXPECT_TRUE(translatable(decode({0x48, 0x89, 0x03})));               // mov [rbx], rax: a soft-TLB check
  EXPECT_TRUE(translatable(decode({0x48, 0x8b, 0x44, 0x24, 0x08})));   // mov rax, [rsp + 8]: the guest's RSP
  EXPECT_TRUE(translatable(decode({0x48, 0x8b, 0x05, 0, 0, 0, 0})));   // mov rax, [rip]: a constant address
  EXPECT_TRUE(translatable(decode({0x65, 0x48, 0x03, 0x03})));         // add rax, gs:[rbx]: plus GS's base
  EXPECT_FALSE(translatable(decode({0x67, 0x48, 0x8b, 0x03})));        // mov rax, [ebx]: 32-bit address
  EXPECT_FALSE(translatable(decode({0x48, 0x89, 0x24, 0x24})));        // mov [rsp], rsp: RSP as a register
  EXPECT_TRUE(translatable(decode({0x48, 0x83, 0xc4, 0x08})));         // add rsp, 8: on a register holding RSP
  EXPECT_TRUE(translatable(decode({0x48, 0x8d, 0x6c, 0x24, 0x08})));   // lea rbp, [rsp + 8]
  EXPECT_FALSE(translatable(decode({0x83, 0xc4, 0x08})));              // add esp, 8: 32-bit
  EXPECT_FALSE(translatable(decode({0x48, 0x3b, 0x23})));              // cmp rsp, [rbx]: RSP and memory
  EXPECT_FALSE(translatable(decode({0x48, 0x8d, 0x05, 0, 0, 0, 0})));  // lea rax, [rip]
  EXPECT_TRUE(translatable(decode({0x48, 0x11, 0xd0})));               // adc rax, rdx
  EXPECT_TRUE(translatable(decode({0x48, 0x0f, 0xaf, 0xd3})));         // imul rdx, rbx
  EXPECT_FALSE(translatable(decode({0x48, 0xf7, 0xeb})));              // imul rbx: writes RDX:RAX
  EXPECT_FALSE(translatable(decode({0xf0, 0x48, 0x01, 0x03})));        // lock add [rbx], rax
  EXPECT_FALSE(translatable(decode({0x75, 0x00})));                    // jnz
  EXPECT_TRUE(translatable(decode({0x41, 0x54})));                     // push r12
  EXPECT_TRUE(translatable(decode({0x6a, 0x07})));                     // push 7
  EXPECT_TRUE(translatable(decode({0x5b})));                           // pop rbx
  EXPECT_FALSE(translatable(decode({0x54})));                          // push rsp
  EXPECT_FALSE(translatable(decode({0x66, 0x50})));                    // push ax: 16-bit
  EXPECT_FALSE(translatable(decode({0xff, 0x33})));                    // push [rbx]
  EXPECT_TRUE(translatable(decode({0x48, 0x0f, 0x43, 0xc3})));         // cmovnb rax, rbx
  EXPECT_TRUE(translatable(decode({0x0f, 0x92, 0xc0})));               // setb al
  EXPECT_TRUE(translatable(decode({0x48, 0x98})));                     // cdqe
  EXPECT_TRUE(translatable(decode({0x0f, 0x1f, 0x44, 0x00, 0x00})));   // nop [rax + rax]
  EXPECT_TRUE(translatable(decode({0x48, 0x87, 0x03})));               // xchg [rbx], rax: a host LOCK'd XCHG
  EXPECT_TRUE(translatable(decode({0x48, 0x0f, 0xc8})));               // bswap rax
  EXPECT_TRUE(translatable(decode({0x48, 0x0f, 0xa3, 0xd0})));         // bt rax, rdx
  EXPECT_TRUE(translatable(decode({0x48, 0x0f, 0xba, 0x2b, 0x03})));   // bts qword [rbx], 3
  EXPECT_FALSE(translatable(decode({0x48, 0x0f, 0xa3, 0x03})));        // bt [rbx], rax: a bit string
  EXPECT_TRUE(translatable(decode({0x48, 0xf7, 0xf3})));               // div rbx
  EXPECT_TRUE(translatable(decode({0xf7, 0x7b, 0x08})));               // idiv dword [rbx + 8]
  EXPECT_FALSE(translatable(decode({0xf6, 0xf3})));                    // div bl: 8 bits
  EXPECT_FALSE(translatable(decode({0x66, 0xf7, 0xf3})));              // div bx: 16 bits
  EXPECT_FALSE(translatable(decode({0x48, 0xf7, 0xf4})));              // div rsp
  EXPECT_TRUE(translatable(decode({0x9c})));                           // pushfq
  EXPECT_FALSE(translatable(decode({0x66, 0x9c})));                    // pushf: 16-bit
  EXPECT_FALSE(translatable(decode({0x9d})));                          // popfq: may open an interrupt window
  EXPECT_TRUE(translatable(decode({0xf0, 0x48, 0x0f, 0xb1, 0x0b})));   // lock cmpxchg [rbx], rcx
  EXPECT_TRUE(translatable(decode({0xf0, 0x0f, 0xc1, 0x0b})));         // lock xadd [rbx], ecx
  EXPECT_TRUE(translatable(decode({0x48, 0x0f, 0xb1, 0xd8})));         // cmpxchg rax, rbx
  EXPECT_FALSE(translatable(decode({0x48, 0x0f, 0xb1, 0xe0})));        // cmpxchg rax, rsp
  EXPECT_FALSE(translatable(decode({0xf0, 0x48, 0x0f, 0xc7, 0x0b})));  // lock cmpxchg8b [rbx]
  EXPECT_FALSE(translatable(decode({0xf0, 0x48, 0x09, 0x03})));        // lock or [rbx], rax
  EXPECT_TRUE(translatable(decode({0xf3, 0x48, 0xab})));               // rep stosq
  EXPECT_TRUE(translatable(decode({0xa4})));                           // movsb
  EXPECT_FALSE(translatable(decode({0xf2, 0xaa})));                    // repne stosb
  EXPECT_FALSE(translatable(decode({0xf3, 0x67, 0x48, 0xa5})));        // rep movsq, 32-bit addresses
  EXPECT_FALSE(translatable(decode({0xf3, 0x64, 0x48, 0xa5})));        // rep movsq from FS
  EXPECT_FALSE(translatable(decode({0xf2, 0x0f, 0x10, 0xc1})));        // movsd xmm0, xmm1 (SSE)
  EXPECT_FALSE(translatable(decode({0xf3, 0x48, 0xa7})));              // repe cmpsq
  EXPECT_TRUE(translatable(decode({0xfa})));                           // cli
  EXPECT_TRUE(translatable(decode({0xfb})));                           // sti
}

}  // namespace
}  // namespace hostvisor::emu::jit
