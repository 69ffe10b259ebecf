// The neutral vCPU state's byte encoding: a round trip keeps every field,
// and the decoder refuses what a damaged or foreign snapshot record holds.
#include "hv/vcpu_state.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

// A state with a distinct value in every field group.
VcpuState sample_state() {
  VcpuState s;
  s.regs.rax = 0x1111;
  s.regs.r15 = 0xffff'0000'1234'5678;
  s.regs.rip = 0xffffffff81000000;
  s.regs.rflags = 0x246;
  s.sregs.cs.selector = 0x10;
  s.sregs.cs.l = true;
  s.sregs.cs.type = 0xb;
  s.sregs.tr.type = 0xb;
  s.sregs.tr.s = false;
  s.sregs.gdt = {0x1000, 0x7f};
  s.sregs.cr0 = 0x80050033;
  s.sregs.cr3 = 0x123000;
  s.sregs.cr4 = 0x20;
  s.sregs.cr8 = 3;
  s.sregs.efer = 0xd01;
  s.fpu.fcw = 0x27f;
  s.fpu.fsw = 0x3800;
  s.fpu.ftw = 0x80;
  s.fpu.fop = 0x7ff;
  s.fpu.st[0] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f};  // 1.0
  s.fpu.mxcsr = 0x1fa0;
  s.fpu.xmm[15][0] = 0xaa;
  s.fpu.ymm_high[3][15] = 0x55;
  s.xcr0 = 7;
  s.tsc = 123'456'789'000;
  s.tsc_khz = 2'000'000;
  s.msrs = {{0xc0000082, 0xffffffff81e00000}, {0x277, 0x0007040600070406}, {0x4b564d01, 0x2001}};
  s.events.exception_injected = true;
  s.events.exception_vector = 14;
  s.events.exception_has_error = true;
  s.events.exception_error = 2;
  s.events.nmi_masked = true;
  s.events.shadow_sti = true;
  s.halted = true;
  s.lapic.id = 3;
  s.lapic.svr = 0x1ff;
  s.lapic.lvt[LocalApicState::kLvtTimer] = 0x20030;
  s.lapic.timer_initial = 100000;
  s.lapic.timer_divide = 0xb;
  s.lapic.timer_elapsed_ns = 777;
  s.lapic.timer_running = true;
  s.lapic.irr[1] = 0x10;
  s.lapic.waiting_for_sipi = true;
  s.lapic.sipi_vector = 0x9a;
  return s;
}

std::vector<uint8_t> encode(const VcpuState& s) {
  StateWriter out;
  encode_vcpu_state(out, s);
  return out.take();
}

TEST(VcpuStateCodec, RoundTripKeepsEveryField) {
  const VcpuState s = sample_state();
  auto decoded = decode_vcpu_state(encode(s), kVcpuStateVersion);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  EXPECT_EQ(*decoded, s);
  // A default state round-trips too (an empty MSR list).
  auto plain = decode_vcpu_state(encode(VcpuState{}), kVcpuStateVersion);
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_EQ(*plain, VcpuState{});
}

TEST(VcpuStateCodec, EveryTruncationAndTrailingBytesAreRefused) {
  const std::vector<uint8_t> bytes = encode(sample_state());
  for (size_t length = 0; length < bytes.size(); ++length) {
    auto decoded = decode_vcpu_state(std::span(bytes.data(), length), kVcpuStateVersion);
    ASSERT_FALSE(decoded.ok()) << "a payload cut to " << length << " of " << bytes.size() << " bytes was accepted";
    EXPECT_EQ(decoded.error().code(), ErrorCode::kCorrupt);
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  auto decoded = decode_vcpu_state(longer, kVcpuStateVersion);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message().find("unexpected bytes"), std::string::npos) << decoded.error().message();
}

TEST(VcpuStateCodec, UnknownVersionIsRefusedWithTheVersionNamed) {
  auto decoded = decode_vcpu_state(encode(sample_state()), kVcpuStateVersion + 1);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(decoded.error().message().find("version 2"), std::string::npos) << decoded.error().message();
}

// Each case breaks one field and names what the message must mention.
TEST(VcpuStateCodec, OutOfRangeFieldsAreRefused) {
  struct Case {
    const char* what;
    void (*damage)(VcpuState&);
    const char* message;
  };
  const Case cases[] = {
      {"rflags bit 1", [](VcpuState& s) { s.regs.rflags = 0; }, "RFLAGS"},
      {"segment type", [](VcpuState& s) { s.sregs.ss.type = 16; }, "descriptor type"},
      {"segment dpl", [](VcpuState& s) { s.sregs.ds.dpl = 4; }, "DPL"},
      {"cr8", [](VcpuState& s) { s.sregs.cr8 = 16; }, "CR8"},
      {"fop", [](VcpuState& s) { s.fpu.fop = 0x800; }, "opcode"},
      {"mxcsr", [](VcpuState& s) { s.fpu.mxcsr = 0x10000; }, "MXCSR"},
      {"xcr0 without x87", [](VcpuState& s) { s.xcr0 = 2; }, "XCR0"},
      {"xcr0 avx without sse", [](VcpuState& s) { s.xcr0 = 5; }, "AVX"},
      {"unknown msr",
       [](VcpuState& s) {
         s.msrs.push_back({0x10, 5});
       },
       "0x10"},
      {"exception vector", [](VcpuState& s) { s.events.exception_vector = 32; }, "exception vector"},
      {"apic base", [](VcpuState& s) { s.lapic.apic_base |= 1; }, "IA32_APIC_BASE"},
      {"lvt", [](VcpuState& s) { s.lapic.lvt[2] = 1u << 20; }, "LVT"},
      {"timer divide", [](VcpuState& s) { s.lapic.timer_divide = 4; }, "divide"},
  };
  for (const Case& c : cases) {
    VcpuState s = sample_state();
    c.damage(s);
    auto decoded = decode_vcpu_state(encode(s), kVcpuStateVersion);
    ASSERT_FALSE(decoded.ok()) << c.what << " was accepted";
    EXPECT_EQ(decoded.error().code(), ErrorCode::kCorrupt) << c.what;
    EXPECT_NE(decoded.error().message().find(c.message), std::string::npos)
        << c.what << ": " << decoded.error().message();
  }
}

TEST(VcpuStateCodec, ABooleanByteOtherThanZeroOrOneIsRefused) {
  VcpuState s = sample_state();
  s.halted = false;
  std::vector<uint8_t> bytes = encode(s);
  // Find the halted byte: flipping that field changes exactly one byte.
  s.halted = true;
  const std::vector<uint8_t> other = encode(s);
  size_t at = 0;
  while (bytes[at] == other[at]) ++at;
  bytes[at] = 2;
  auto decoded = decode_vcpu_state(bytes, kVcpuStateVersion);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message().find("boolean"), std::string::npos) << decoded.error().message();
}

TEST(VcpuStateCodec, AnMsrCountBeyondTheListIsRefusedBeforeReading) {
  VcpuState s;
  std::vector<uint8_t> bytes = encode(s);
  // The count follows the fixed part up to tsc_khz; an empty list encodes
  // as four zero bytes there. Overwrite it with a huge count.
  VcpuState one;
  one.msrs = {{0x174, 0}};
  const std::vector<uint8_t> with_one = encode(one);
  size_t at = 0;
  while (bytes[at] == with_one[at]) ++at;
  ASSERT_EQ(with_one[at], 1);
  const uint32_t huge = 0xffffffff;
  std::memcpy(&bytes[at], &huge, 4);
  auto decoded = decode_vcpu_state(bytes, kVcpuStateVersion);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message().find("MSRs"), std::string::npos) << decoded.error().message();
}

}  // namespace
}  // namespace hostvisor
