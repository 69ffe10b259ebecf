// The conversions between KVM's state structs and the neutral VcpuState and
// IrqchipState parts, without /dev/kvm: what both sides can express comes
// back unchanged, and the timers convert between KVM's counts and host
// times and the neutral elapsed times.
#include <gtest/gtest.h>

#include <vector>

#include "hv/kvm/kvm_irqchip_state.h"
#include "hv/kvm/kvm_vcpu_state.h"

namespace hostvisor::kvm {
namespace {

LocalApicState sample_lapic() {
  LocalApicState s;
  s.apic_base = 0xfee00900;
  s.id = 5;
  s.tpr = 0x21;
  s.ldr = 0x01000000;
  s.dfr = 0x0fffffff;
  s.svr = 0x1ff;
  s.esr = 0x40;
  s.icr_low = 0x4500;
  s.icr_high = 0x02000000;
  s.lvt = {0x20030, 0x10000, 0x10000, 0x700, 0x400, 0x10031};  // periodic timer, LINT0 ExtINT, LINT1 NMI
  s.timer_initial = 1000;
  s.timer_divide = 0xb;  // divide by 1
  s.timer_running = true;
  s.timer_elapsed_ns = 300 * kKvmApicBusCycleNs;
  s.irr[2] = 0x8;
  s.isr[7] = 0x80000000;
  s.tmr[2] = 0x8;
  return s;
}

uint32_t page_word(const kvm_lapic_state& page, size_t offset) {
  uint32_t v;
  std::memcpy(&v, page.regs + offset, 4);
  return v;
}

TEST(KvmLapicConversion, RegistersRoundTripAndTheTimerBecomesTheCurrentCount) {
  const LocalApicState s = sample_lapic();
  kvm_lapic_state page{};
  lapic_to_kvm(s, page);
  EXPECT_EQ(page_word(page, 0x20), 5u << 24);
  EXPECT_EQ(page_word(page, 0x390), 700u) << "TMCCT: 300 of 1000 ticks done";
  EXPECT_EQ(lapic_from_kvm(page, s.apic_base), s);
}

TEST(KvmLapicConversion, AnExpiredOneShotTimerIsStoppedAndDividersCount) {
  LocalApicState s = sample_lapic();
  s.lvt[LocalApicState::kLvtTimer] = 0x30;  // one-shot
  s.timer_divide = 0x3;                     // divide by 16
  s.timer_elapsed_ns = 16 * 250;
  kvm_lapic_state page{};
  lapic_to_kvm(s, page);
  EXPECT_EQ(page_word(page, 0x390), 750u);
  EXPECT_EQ(lapic_from_kvm(page, s.apic_base).timer_elapsed_ns, 16u * 250);
  // KVM reports an expired one-shot count as 0: stopped, nothing elapsed to carry.
  std::memset(page.regs + 0x390, 0, 4);
  const LocalApicState stopped = lapic_from_kvm(page, s.apic_base);
  EXPECT_FALSE(stopped.timer_running);
  EXPECT_EQ(stopped.timer_elapsed_ns, 0u);
  // A count due but not yet fired still fires on KVM: it is given one tick.
  s.timer_elapsed_ns = 16 * 5000;
  lapic_to_kvm(s, page);
  EXPECT_EQ(page_word(page, 0x390), 1u);
}

TEST(KvmFpuConversion, XsaveRoundTripKeepsX87SseAndAvx) {
  FpuState f;
  f.fcw = 0x27f;
  f.fsw = 0x3820;
  f.ftw = 0xc0;
  f.fop = 0x5d9;
  f.fip = 0xffffffff81234567;
  f.fdp = 0x7fff0000;
  f.st[0] = {1, 2, 3, 4, 5, 6, 7, 0x80, 0xff, 0x3f};
  f.mxcsr = 0x1fa0;
  f.xmm[7][3] = 0x99;
  f.ymm_high[12][15] = 0x42;
  std::vector<uint8_t> xsave(kXsaveMinimumSize, 0xcc);  // what KVM had: replaced where it matters
  fpu_to_xsave(f, 0x7, xsave);
  EXPECT_EQ(fpu_from_xsave(xsave), f);
  // Without AVX in XCR0 its XSTATE_BV bit is clear and the upper halves read as zero.
  fpu_to_xsave(f, 0x3, xsave);
  FpuState no_avx = f;
  no_avx.ymm_high = {};
  EXPECT_EQ(fpu_from_xsave(xsave), no_avx);
  EXPECT_EQ(fpu_from_kvm(fpu_to_kvm(f)), no_avx);
}

TEST(KvmEventConversion, EventsAndRunStatesRoundTrip) {
  PendingEvents e;
  e.exception_injected = true;
  e.exception_vector = 13;
  e.exception_has_error = true;
  e.exception_error = 0x18;
  e.interrupt_injected = true;
  e.interrupt_vector = 0xec;
  e.nmi_masked = true;
  e.shadow_mov_ss = true;
  LocalApicState lapic;
  lapic.nmi_pending = true;
  lapic.sipi_vector = 0x9a;
  const kvm_vcpu_events k = events_to_kvm(e, lapic);
  EXPECT_EQ(k.nmi.pending, 1);
  EXPECT_EQ(k.sipi_vector, 0x9au);
  EXPECT_EQ(events_from_kvm(k), e);

  for (uint32_t mp : {KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_HALTED, KVM_MP_STATE_UNINITIALIZED,
                      KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_SIPI_RECEIVED}) {
    VcpuState s;
    mp_state_from_kvm(mp, s);
    EXPECT_EQ(mp_state_to_kvm(s), mp) << "MP state " << mp;
  }
}

TEST(KvmChipsetConversion, PicAndIoapicRoundTrip) {
  PicChipState master{.irr = 0x11,
                      .isr = 0x1,
                      .imr = 0xb8,
                      .elcr = 0,
                      .lines = 0x10,
                      .vector_base = 0x20,
                      .priority_base = 5,
                      .init_step = 3,
                      .icw4_needed = true,
                      .auto_eoi = true,
                      .special_mask = true,
                      .read_isr = true,
                      .cascade = 0x04};
  kvm_pic_state k{};
  k.elcr_mask = 0xf8;
  pic_to_kvm(master, k);
  EXPECT_EQ(k.init_state, 2) << "KVM counts ICW2-ICW4 as 1-3";
  EXPECT_EQ(pic_from_kvm(k, true), master);
  PicChipState slave{.imr = 0xff, .elcr = 0x0e, .vector_base = 0x28, .cascade = 0x02};
  k.elcr_mask = 0xde;
  pic_to_kvm(slave, k);
  EXPECT_EQ(pic_from_kvm(k, false), slave);

  IoApicState io;
  io.id = 1;
  io.select = 0x12;
  io.entries[2] = 0x0300000000000930;
  io.entries[9] = 0x000000000001e0ff & 0x1efff;
  io.pin_levels = 1u << 9;
  kvm_ioapic_state kio{};
  ioapic_to_kvm(io, kio);
  EXPECT_EQ(kio.base_address, 0xfec00000u);
  EXPECT_EQ(ioapic_from_kvm(kio), io);
}

TEST(KvmChipsetConversion, PitCountsAreElapsedTimeAndPhasesRoundTrip) {
  PitState s;
  s.channels[0] = {.mode = 2,
                   .access = 3,
                   .count = 11932,
                   .counting = true,
                   .armed = false,
                   .elapsed_ticks = 1193,
                   .null_count = false};
  s.channels[1] = {.mode = 3,
                   .access = 3,
                   .count = 18,
                   .counting = true,
                   .armed = false,
                   .write_high_next = true,
                   .write_low = 0x12,
                   .null_count = false,
                   .latched = true,
                   .latched_value = 0xbeef,
                   .latched_high_next = true};
  s.channels[2] = {.mode = 0,
                   .access = 1,
                   .gate = false,
                   .count = 0x10000,
                   .counting = true,
                   .armed = false,
                   .null_count = false,
                   .status_latched = true,
                   .status = 0x70};
  s.port61 = 0x2;  // speaker on, gate low
  const int64_t now = 5'000'000'000;
  const kvm_pit_state2 k = pit_to_kvm(s, now);
  EXPECT_EQ(k.channels[0].count_load_time, now - 999'847) << "1193 ticks of 1.193182 MHz";
  EXPECT_EQ(k.channels[1].write_state, 4) << "the high byte comes next";
  EXPECT_EQ(k.channels[1].count_latched, 4);
  EXPECT_EQ(k.flags, static_cast<uint32_t>(KVM_PIT_FLAGS_SPEAKER_DATA_ON));
  PitState back = pit_from_kvm(k, now);
  EXPECT_EQ(back.channels[0].elapsed_ticks, 1192u) << "rounded down through nanoseconds";
  back.channels[0].elapsed_ticks = 1193;
  EXPECT_EQ(back, s);
}

TEST(KvmChipsetConversion, AChannelKvmNeverProgrammedIsNotCounting) {
  kvm_pit_state2 k{};
  k.channels[0].mode = 0xff;  // KVM's reset value
  k.channels[0].rw_mode = 0;
  k.channels[0].count = 0x10000;
  k.channels[0].count_load_time = 100;
  const PitState s = pit_from_kvm(k, 200);
  EXPECT_FALSE(s.channels[0].counting);
  EXPECT_EQ(s.channels[0].mode, 0);
  EXPECT_EQ(s.channels[0].access, 3);
  EXPECT_EQ(s.channels[0].elapsed_ticks, 0u) << "no load time to count from";
  EXPECT_EQ(pit_to_kvm(s, 200).channels[0].mode, 0xff);
}

}  // namespace
}  // namespace hostvisor::kvm
