// The neutral interrupt-controller state's byte encoding: a round trip keeps
// every field, and the decoder refuses truncated or out-of-range input.
#include "hv/irqchip_state.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

IrqchipState sample_state() {
  IrqchipState s;
  s.io_apic.id = 2;
  s.io_apic.select = 0x13;
  s.io_apic.entries[4] = 0x0100000000008031;  // level, remote IRR clear, vector 0x31, destination 1
  s.io_apic.entries[23] = 0x10000;            // masked
  s.io_apic.pin_levels = 1u << 4;
  s.pic.chips[0] = {.irr = 1,
                    .isr = 4,
                    .imr = 0xf8,
                    .elcr = 0,
                    .vector_base = 0x30,
                    .priority_base = 3,
                    .auto_eoi = true,
                    .cascade = 4};
  s.pic.chips[1] = {.imr = 0xff, .elcr = 0x0e, .vector_base = 0x38, .init_step = 3, .single = false, .cascade = 2};
  s.pit.channels[0] = {.mode = 2, .count = 11932, .counting = true, .elapsed_ticks = 4000};
  s.pit.channels[2] = {
      .mode = 0, .access = 1, .gate = false, .count = 0x10000, .latched = true, .latched_value = 0x1234};
  s.pit.port61 = 0x3;
  s.clock_ns = 5'000'000'000;
  s.vcpu_count = 4;
  return s;
}

std::vector<uint8_t> encode(const IrqchipState& s) {
  StateWriter out;
  encode_irqchip_state(out, s);
  return out.take();
}

TEST(IrqchipStateCodec, RoundTripKeepsEveryField) {
  const IrqchipState s = sample_state();
  auto decoded = decode_irqchip_state(encode(s), kIrqchipStateVersion);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  EXPECT_EQ(*decoded, s);
}

TEST(IrqchipStateCodec, EveryTruncationTrailingBytesAndUnknownVersionsAreRefused) {
  const std::vector<uint8_t> bytes = encode(sample_state());
  for (size_t length = 0; length < bytes.size(); ++length) {
    auto decoded = decode_irqchip_state(std::span(bytes.data(), length), kIrqchipStateVersion);
    ASSERT_FALSE(decoded.ok()) << "a payload cut to " << length << " bytes was accepted";
    EXPECT_EQ(decoded.error().code(), ErrorCode::kCorrupt);
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_irqchip_state(longer, kIrqchipStateVersion).ok());
  auto future = decode_irqchip_state(bytes, 0);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.error().code(), ErrorCode::kUnsupported);
}

TEST(IrqchipStateCodec, OutOfRangeFieldsAreRefused) {
  struct Case {
    void (*damage)(IrqchipState&);
    const char* message;
  };
  const Case cases[] = {
      {[](IrqchipState& s) { s.io_apic.id = 16; }, "IOAPIC: id"},
      {[](IrqchipState& s) { s.io_apic.entries[0] |= 1ull << 40; }, "reserved bits"},
      {[](IrqchipState& s) { s.io_apic.pin_levels = 1u << 24; }, "pin 23"},
      {[](IrqchipState& s) { s.pic.chips[1].vector_base = 0x39; }, "vector base"},
      {[](IrqchipState& s) { s.pic.chips[0].priority_base = 8; }, "priority base"},
      {[](IrqchipState& s) { s.pic.chips[0].init_step = 5; }, "initialisation step"},
      {[](IrqchipState& s) { s.pit.channels[1].mode = 6; }, "mode 6"},
      {[](IrqchipState& s) { s.pit.channels[1].access = 0; }, "access mode"},
      {[](IrqchipState& s) { s.pit.channels[0].count = 0x10001; }, "reload value"},
      {[](IrqchipState& s) { s.pit.port61 = 0x10; }, "port 0x61"},
      {[](IrqchipState& s) { s.vcpu_count = 0; }, "vCPU count"},
      {[](IrqchipState& s) { s.vcpu_count = 256; }, "vCPU count"},
  };
  for (const Case& c : cases) {
    IrqchipState s = sample_state();
    c.damage(s);
    auto decoded = decode_irqchip_state(encode(s), kIrqchipStateVersion);
    ASSERT_FALSE(decoded.ok()) << c.message << " was accepted";
    EXPECT_NE(decoded.error().message().find(c.message), std::string::npos) << decoded.error().message();
  }
}

TEST(IrqchipStateCodec, AVcpuCountMismatchNamesBothCounts) {
  auto r = check_irqchip_vcpu_count(sample_state(), 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "the saved VM had 4 vCPUs and this one has 2; restore with --cpus 4");
  EXPECT_TRUE(check_irqchip_vcpu_count(sample_state(), 4).ok());
}

}  // namespace
}  // namespace hostvisor
